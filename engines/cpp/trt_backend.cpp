// See trt_backend.h. The binding logic (which tensors, dtypes, shapes, bytes; buffer reuse) is
// io_plan.hpp's, tested without TensorRT by tests/engines/test_io_plan.py; this file only asks
// TensorRT and CUDA. Engines whose output shapes depend on values (the dynamic export) would need an
// IOutputAllocator: the plan refuses them by name (build from `export --shapes static`).
#include "trt_backend.h"

#include "io_plan.hpp"

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

io::DType from_trt(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return io::DType::kFloat32;
    case nvinfer1::DataType::kHALF: return io::DType::kFloat16;
    case nvinfer1::DataType::kBF16: return io::DType::kBFloat16;
    case nvinfer1::DataType::kINT8: return io::DType::kInt8;
    case nvinfer1::DataType::kUINT8: return io::DType::kUInt8;
    case nvinfer1::DataType::kINT32: return io::DType::kInt32;
    case nvinfer1::DataType::kINT64: return io::DType::kInt64;
    case nvinfer1::DataType::kBOOL: return io::DType::kBool;
    default: return io::DType::kOther;
  }
}

at::ScalarType to_torch(io::DType t) {
  switch (t) {
    case io::DType::kFloat32: return at::kFloat;
    case io::DType::kFloat16: return at::kHalf;
    case io::DType::kBFloat16: return at::kBFloat16;
    case io::DType::kInt8: return at::kChar;
    case io::DType::kUInt8: return at::kByte;
    case io::DType::kInt32: return at::kInt;
    case io::DType::kInt64: return at::kLong;
    case io::DType::kBool: return at::kBool;
    default: throw std::runtime_error("engine tensor of an unsupported data type");
  }
}

std::vector<int64_t> to_vector(const nvinfer1::Dims& d) {
  return std::vector<int64_t>(d.d, d.d + d.nbDims);
}

}  // namespace

struct TrtEngine::Impl {
  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  cudaStream_t stream = nullptr;
  io::Buffers buffers{[](std::size_t n) {
                        void* p = nullptr;
                        check(cudaMalloc(&p, n), "cudaMalloc");
                        return p;
                      },
                      [](void* p) { cudaFree(p); }};
  io::Plan plan;
  bool prepared = false;

  // The engine's I/O tensors; outputs with the context's shapes (valid once the input shape is set).
  std::vector<io::TensorInfo> describe() const {
    std::vector<io::TensorInfo> out;
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
      const char* name = engine->getIOTensorName(i);
      io::TensorInfo t;
      t.name = name;
      t.is_input = engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
      t.dtype = from_trt(engine->getTensorDataType(name));
      t.dims = to_vector(t.is_input ? engine->getTensorShape(name) : context->getTensorShape(name));
      out.push_back(t);
    }
    return out;
  }
};

TrtEngine::TrtEngine(const std::string& plan_path) : impl_(std::make_unique<Impl>()) {
  std::ifstream f(plan_path, std::ios::binary);
  if (!f) throw std::runtime_error(plan_path + ": cannot open the engine; build it with `madtp-deploy build`");
  std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  impl_->runtime.reset(nvinfer1::createInferRuntime(impl_->logger));
  if (!impl_->runtime) throw std::runtime_error("TensorRT: createInferRuntime failed");
  impl_->engine.reset(impl_->runtime->deserializeCudaEngine(blob.data(), blob.size()));
  if (!impl_->engine)
    throw std::runtime_error(plan_path + ": TensorRT cannot deserialize it (built for another GPU or TensorRT "
                             "version?); rebuild it here with `madtp-deploy build`");
  impl_->context.reset(impl_->engine->createExecutionContext());
  if (!impl_->context) throw std::runtime_error(plan_path + ": TensorRT could not create an execution context");
  check(cudaStreamCreate(&impl_->stream), "cudaStreamCreate");
}

TrtEngine::~TrtEngine() {
  if (impl_ && impl_->stream) cudaStreamDestroy(impl_->stream);
}

void TrtEngine::prepare(const at::Tensor& pixels) {
  auto& m = *impl_;
  std::vector<int64_t> shape(pixels.sizes().begin(), pixels.sizes().end());
  const std::vector<io::TensorInfo> before = m.describe();
  const io::TensorInfo& in = io::image_input(before);
  std::vector<int64_t> want = io::input_shape(in, shape);
  nvinfer1::Dims dims{};
  dims.nbDims = static_cast<int32_t>(want.size());
  for (int32_t i = 0; i < dims.nbDims; ++i) dims.d[i] = want[i];
  if (!m.context->setInputShape(in.name.c_str(), dims))
    throw std::runtime_error("engine input '" + in.name + "': shape " + io::dims_str(want) + " is outside the "
                             "engine's profile; fix: rebuild with matching --batch-sizes");
  m.plan = io::make_plan(m.describe(), shape);  // outputs' shapes now known to the context
  m.buffers.ensure(m.plan);
  auto bind = [&](const io::Binding& b) {
    if (!m.context->setTensorAddress(b.name.c_str(), m.buffers.at(b.name)))
      throw std::runtime_error("TensorRT refused the address of '" + b.name + "'");
  };
  bind(m.plan.input);
  for (const auto& o : m.plan.outputs) bind(o);
  at::Tensor host = pixels.to(to_torch(m.plan.input.dtype)).contiguous();
  check(cudaMemcpyAsync(m.buffers.at(m.plan.input.name), host.data_ptr(), m.plan.input.bytes, cudaMemcpyHostToDevice,
                        m.stream), "copy in");
  check(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
  m.prepared = true;
}

void TrtEngine::execute() {
  auto& m = *impl_;
  if (!m.prepared) throw std::runtime_error("TrtEngine::execute before prepare");
  if (!m.context->enqueueV3(m.stream)) throw std::runtime_error("TensorRT enqueueV3 failed (see its log above)");
  check(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
}

std::vector<std::pair<std::string, at::Tensor>> TrtEngine::outputs() {
  auto& m = *impl_;
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& b : m.plan.outputs) {
    at::Tensor host = at::empty(b.shape, at::TensorOptions().dtype(to_torch(b.dtype)));
    check(cudaMemcpyAsync(host.data_ptr(), m.buffers.at(b.name), b.bytes, cudaMemcpyDeviceToHost, m.stream), "copy out");
    out.emplace_back(b.name, host);
  }
  check(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
  return out;
}

}  // namespace madtp
