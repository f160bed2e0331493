// The I/O binding plan of madtp_infer's TensorRT backend, without TensorRT (header-only, C++17).
//
// trt_backend.cpp describes the engine's I/O tensors from TensorRT's own answers
// (ICudaEngine::getNbIOTensors / getTensorName / getTensorIOMode / getTensorDataType, the input's
// engine dims, and each output's IExecutionContext::getTensorShape once the input shape is set)
// and makes a Plan from them: every I/O tensor by the engine's name and dtype, with its shape and
// byte size. TensorRT needs an address for every output before enqueueV3 (a static engine has
// `overflow` besides `embeds` and `kept`). tests/engines/test_io_plan.py runs the same code against
// engine descriptions built from an export's sidecar (engines/cpp/tests/io_plan_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace madtp {
namespace io {

enum class DType { kFloat32, kFloat16, kBFloat16, kInt8, kUInt8, kInt32, kInt64, kBool, kOther };

inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: case DType::kInt32: return 4;
    case DType::kFloat16: case DType::kBFloat16: return 2;
    case DType::kInt64: return 8;
    case DType::kInt8: case DType::kUInt8: case DType::kBool: return 1;
    default: return 0;
  }
}

// the names export sidecars use (numpy/torch dtype names)
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kBool: return "bool";
    default: return "other";
  }
}

inline DType dtype_from_name(const std::string& s) {
  for (DType t : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt8, DType::kUInt8, DType::kInt32,
                  DType::kInt64, DType::kBool})
    if (s == dtype_name(t)) return t;
  return DType::kOther;
}

inline bool is_float(DType t) { return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16; }

// What the engine says of one I/O tensor. dims: for the input, the engine's (-1 = set at run time);
// for an output, the context's after the input shape is set (-1 = depends on values).
struct TensorInfo {
  std::string name;
  bool is_input = false;
  DType dtype = DType::kOther;
  std::vector<int64_t> dims;
};

struct Binding {
  std::string name;
  bool is_input = false;
  DType dtype = DType::kOther;
  std::vector<int64_t> shape;
  std::size_t bytes = 0;
};

struct Plan {
  Binding input;                 // the image input
  std::vector<Binding> outputs;  // every output, in the engine's order
  const Binding* output(const std::string& name) const {
    for (const auto& b : outputs)
      if (b.name == name) return &b;
    return nullptr;
  }
  bool operator==(const Plan& o) const {
    auto same = [](const Binding& a, const Binding& b) {
      return a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
    };
    if (!same(input, o.input) || outputs.size() != o.outputs.size()) return false;
    for (std::size_t i = 0; i < outputs.size(); ++i)
      if (!same(outputs[i], o.outputs[i])) return false;
    return true;
  }
};

inline std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

// The one image input of the engine; throws when there is none or more than one.
inline const TensorInfo& image_input(const std::vector<TensorInfo>& tensors) {
  const TensorInfo* found = nullptr;
  std::string names;
  int n = 0;
  for (const auto& t : tensors)
    if (t.is_input) {
      found = &t;
      names += (n++ ? ", " : "") + t.name;
    }
  if (n != 1)
    throw std::runtime_error("the engine has " + std::to_string(n) + " inputs (" + names + "); madtp_infer feeds "
                             "one image input: build the engine from an image graph (<model>.image.onnx)");
  return *found;
}

// The shape to set on the image input for pixels of `pixels` shape; throws (naming the input and
// the fix) if the rank, a fixed dim, or the input's dtype (a float type: the app converts the
// float32 pixels to it) does not fit.
inline std::vector<int64_t> input_shape(const TensorInfo& in, const std::vector<int64_t>& pixels) {
  if (!is_float(in.dtype))
    throw std::runtime_error("engine input '" + in.name + "' is " + dtype_name(in.dtype) + ", madtp_infer feeds "
                             "images as floats; fix: build the engine from an image graph with a float input");
  if (in.dims.size() != pixels.size())
    throw std::runtime_error("engine input '" + in.name + "' has shape " + dims_str(in.dims) + ", the images " +
                             dims_str(pixels) + "; fix: pass [3,H,W] or [B,3,H,W] images of the engine's size");
  for (std::size_t i = 0; i < pixels.size(); ++i)
    if (in.dims[i] >= 0 && in.dims[i] != pixels[i])
      throw std::runtime_error("engine input '" + in.name + "' has shape " + dims_str(in.dims) + ", the images " +
                               dims_str(pixels) + "; fix: pass images of the engine's size (and a batch it was built for)");
  return pixels;
}

// Every I/O tensor with its shape and bytes; `embeds` and `kept` must be among the outputs.
inline Plan make_plan(const std::vector<TensorInfo>& tensors, const std::vector<int64_t>& pixels) {
  Plan plan;
  const TensorInfo& in = image_input(tensors);
  auto bind = [](const TensorInfo& t, const std::vector<int64_t>& shape) {
    if (dtype_size(t.dtype) == 0)
      throw std::runtime_error("engine tensor '" + t.name + "' has a data type madtp_infer does not handle; fix: "
                               "export fp32 graphs (quantized graphs keep float inputs and outputs)");
    std::size_t n = 1;
    for (int64_t d : shape) n *= static_cast<std::size_t>(d);
    return Binding{t.name, t.is_input, t.dtype, shape, n * dtype_size(t.dtype)};
  };
  plan.input = bind(in, input_shape(in, pixels));
  for (const auto& t : tensors) {
    if (t.is_input) continue;
    for (int64_t d : t.dims)
      if (d < 0)
        throw std::runtime_error("engine output '" + t.name + "' has shape " + dims_str(t.dims) + ", which depends "
                                 "on values; fix: build the engine from the static-shape export (export --shapes static)");
    plan.outputs.push_back(bind(t, t.dims));
  }
  for (const char* need : {"embeds", "kept"})
    if (!plan.output(need))
      throw std::runtime_error(std::string("the engine has no output '") + need + "'; fix: build it from a MADTP image "
                               "graph (madtp-deploy export)");
  return plan;
}

// Device buffers for a plan, allocated once and kept while later plans fit in them (the timed loop
// never allocates). Alloc: size_t -> void*, Free: void* -> void (cudaMalloc/cudaFree in the backend).
class Buffers {
 public:
  using Alloc = std::function<void*(std::size_t)>;
  using Free = std::function<void(void*)>;
  Buffers(Alloc alloc, Free free) : alloc_(std::move(alloc)), free_(std::move(free)) {}
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
  ~Buffers() {
    for (auto& [name, slot] : slots_) free_(slot.ptr);
  }

  // Makes every tensor of `plan` addressable; (re)allocates only those that grew.
  void ensure(const Plan& plan) {
    auto need = [&](const Binding& b) {
      auto& slot = slots_[b.name];
      if (slot.ptr && slot.bytes >= b.bytes) return;
      if (slot.ptr) free_(slot.ptr);
      slot.ptr = nullptr;
      slot.ptr = alloc_(b.bytes ? b.bytes : 1);
      slot.bytes = b.bytes;
    };
    need(plan.input);
    for (const auto& b : plan.outputs) need(b);
  }

  void* at(const std::string& name) const {
    auto it = slots_.find(name);
    if (it == slots_.end() || !it->second.ptr) throw std::runtime_error("no device buffer for '" + name + "'");
    return it->second.ptr;
  }

 private:
  struct Slot {
    void* ptr = nullptr;
    std::size_t bytes = 0;
  };
  Alloc alloc_;
  Free free_;
  std::map<std::string, Slot> slots_;
};

}  // namespace io
}  // namespace madtp
