// TensorRT engine backend of madtp_infer (built only with -DMADTP_WITH_TENSORRT=ON where a TensorRT
// SDK and CUDA are found). Written against the TensorRT 11 C++ API (IRuntime, ICudaEngine,
// IExecutionContext::setTensorAddress / enqueueV3); compiled here only against the TensorRT 11.1
// headers, never linked or run on the development machines (no GPU, no TensorRT libraries).
//
// Every I/O tensor is bound by the engine's own names and dtypes (io_plan.hpp): a static engine's
// `overflow` too. Device buffers are allocated and the images copied in by prepare(), outside the
// latency loop, which times execute() (enqueueV3 + stream sync) only.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace madtp {

class TrtEngine {
 public:
  explicit TrtEngine(const std::string& plan_path);
  ~TrtEngine();
  // pixels [B,3,H,W] float32 on the CPU: sets the input shape, binds every I/O tensor (device buffers
  // kept across calls while they fit), copies the pixels in, converted to the engine input's dtype.
  void prepare(const at::Tensor& pixels);
  // One inference on what prepare() bound: enqueueV3 and a stream sync.
  void execute();
  // Every output copied back to the CPU, by the engine's names, in the engine's order.
  std::vector<std::pair<std::string, at::Tensor>> outputs();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace madtp
