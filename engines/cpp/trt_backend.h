// TensorRT engine backend of madtp_infer (built only with -DMADTP_WITH_TENSORRT=ON where a TensorRT
// SDK and CUDA are found). NOT BUILT OR RUN on the development machines: no TensorRT there.
// Written against the TensorRT 10/11 C++ API (IRuntime, ICudaEngine, IExecutionContext::enqueueV3).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

namespace madtp {

class TrtEngine {
 public:
  explicit TrtEngine(const std::string& plan_path);
  ~TrtEngine();
  // pixels [B,3,H,W] float32 on the CPU -> {embeds [B,E] float32, kept [B,layers] int64} on the CPU.
  std::vector<at::Tensor> run(const at::Tensor& pixels);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace madtp
