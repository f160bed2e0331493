// See trt_backend.h. Engines whose output shapes depend on values (the dynamic export) need an
// IOutputAllocator; this backend serves the static-shape export (`export --shapes static`) and
// says so when an output shape is unknown after the input shape is set.
#include "trt_backend.h"

#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>

namespace madtp {
namespace {

class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "tensorrt: " << msg << "\n";
  }
};

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

at::ScalarType to_torch(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return at::kFloat;
    case nvinfer1::DataType::kHALF: return at::kHalf;
    case nvinfer1::DataType::kINT32: return at::kInt;
    case nvinfer1::DataType::kINT64: return at::kLong;
    case nvinfer1::DataType::kBOOL: return at::kBool;
    default: throw std::runtime_error("engine output of an unsupported data type");
  }
}

}  // namespace

struct TrtEngine::Impl {
  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  cudaStream_t stream = nullptr;
};

TrtEngine::TrtEngine(const std::string& plan_path) : impl_(std::make_unique<Impl>()) {
  std::ifstream f(plan_path, std::ios::binary);
  if (!f) throw std::runtime_error(plan_path + ": cannot open the engine; build it with `madtp-deploy build`");
  std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  impl_->runtime.reset(nvinfer1::createInferRuntime(impl_->logger));
  impl_->engine.reset(impl_->runtime->deserializeCudaEngine(blob.data(), blob.size()));
  if (!impl_->engine)
    throw std::runtime_error(plan_path + ": TensorRT cannot deserialize it (built for another GPU or TensorRT "
                             "version?); rebuild it here with `madtp-deploy build`");
  impl_->context.reset(impl_->engine->createExecutionContext());
  check(cudaStreamCreate(&impl_->stream), "cudaStreamCreate");
}

TrtEngine::~TrtEngine() {
  if (impl_ && impl_->stream) cudaStreamDestroy(impl_->stream);
}

std::vector<at::Tensor> TrtEngine::run(const at::Tensor& pixels) {
  auto& ctx = *impl_->context;
  auto& eng = *impl_->engine;
  nvinfer1::Dims in{};
  in.nbDims = static_cast<int32_t>(pixels.dim());
  for (int i = 0; i < in.nbDims; ++i) in.d[i] = pixels.size(i);
  if (!ctx.setInputShape("pixels", in))
    throw std::runtime_error("input shape outside the engine's profile; rebuild with matching --batch-sizes");
  std::vector<void*> device;
  auto alloc = [&](size_t bytes) {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes), "cudaMalloc");
    device.push_back(p);
    return p;
  };
  std::vector<at::Tensor> outputs;
  try {
    void* x = alloc(pixels.nbytes());
    check(cudaMemcpyAsync(x, pixels.data_ptr(), pixels.nbytes(), cudaMemcpyHostToDevice, impl_->stream), "copy in");
    ctx.setTensorAddress("pixels", x);
    std::vector<std::pair<void*, at::Tensor>> outs;
    for (const char* name : {"embeds", "kept"}) {
      nvinfer1::Dims d = ctx.getTensorShape(name);
      std::vector<int64_t> shape;
      for (int i = 0; i < d.nbDims; ++i) {
        if (d.d[i] < 0)
          throw std::runtime_error(std::string("output '") + name + "' has a value-dependent shape; build the "
                                   "engine from the static-shape export (export --shapes static)");
        shape.push_back(d.d[i]);
      }
      at::Tensor host = at::empty(shape, at::TensorOptions().dtype(to_torch(eng.getTensorDataType(name))));
      void* p = alloc(host.nbytes());
      ctx.setTensorAddress(name, p);
      outs.emplace_back(p, host);
    }
    if (!ctx.enqueueV3(impl_->stream)) throw std::runtime_error("enqueueV3 failed");
    for (auto& [p, host] : outs)
      check(cudaMemcpyAsync(host.data_ptr(), p, host.nbytes(), cudaMemcpyDeviceToHost, impl_->stream), "copy out");
    check(cudaStreamSynchronize(impl_->stream), "cudaStreamSynchronize");
    for (auto& [p, host] : outs) outputs.push_back(host);
  } catch (...) {
    for (void* p : device) cudaFree(p);
    throw;
  }
  for (void* p : device) cudaFree(p);
  return outputs;
}

}  // namespace madtp
