// Runs madtp_infer's TensorRT binding plan (io_plan.hpp) against an engine description, without
// TensorRT: tests/engines/test_io_plan.py builds the description from an export's sidecar.
//
//   g++ -std=c++17 -I engines/cpp engines/cpp/tests/io_plan_test.cpp -o io_plan_test
//   io_plan_test < description
//
// description, one tensor or run per line (what the engine and its context would answer):
//   input  NAME DTYPE DIM...     the engine's dims; -1 = set at run time
//   output NAME DTYPE DIM...     the context's dims after the input shape is set; b = the batch,
//                                -1 = depends on values
//   run    DIM...                bind for images of this shape
// For each run prints one JSON line: the plan (every bound tensor: name, dtype, shape, bytes, and
// whether it has a device address) and the device allocations made so far; or {"error": ...}.
#include "io_plan.hpp"

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using madtp::io::Binding;
using madtp::io::Buffers;
using madtp::io::TensorInfo;

namespace {

std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return out + "\"";
}

std::string binding_json(const Binding& b, const Buffers& buffers) {
  bool addressed = false;
  try {
    addressed = buffers.at(b.name) != nullptr;
  } catch (const std::exception&) {
  }
  return "{\"name\": " + json_str(b.name) + ", \"dtype\": \"" + madtp::io::dtype_name(b.dtype) +
         "\", \"shape\": " + madtp::io::dims_str(b.shape) + ", \"bytes\": " + std::to_string(b.bytes) +
         ", \"addressed\": " + (addressed ? "true" : "false") + "}";
}

}  // namespace

int main() {
  std::vector<TensorInfo> described;
  std::vector<char> heap(1 << 20);
  std::size_t used = 0;
  int allocations = 0, frees = 0;
  Buffers buffers([&](std::size_t n) { ++allocations; void* p = heap.data() + used; used += n; return p; },
                  [&](void*) { ++frees; });
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string kind;
    if (!(in >> kind)) continue;
    if (kind == "input" || kind == "output") {
      TensorInfo t;
      std::string dtype, tok;
      in >> t.name >> dtype;
      t.is_input = kind == "input";
      t.dtype = madtp::io::dtype_from_name(dtype);
      while (in >> tok) t.dims.push_back(tok == "b" ? -2 : std::stoll(tok));  // -2: the batch, set per run
      described.push_back(t);
    } else if (kind == "run") {
      std::vector<int64_t> pixels;
      int64_t d;
      while (in >> d) pixels.push_back(d);
      std::vector<TensorInfo> tensors = described;
      for (auto& t : tensors)
        for (auto& x : t.dims)
          if (x == -2) x = pixels.empty() ? -1 : pixels[0];
      try {
        madtp::io::Plan plan = madtp::io::make_plan(tensors, pixels);
        buffers.ensure(plan);
        std::cout << "{\"input\": " << binding_json(plan.input, buffers) << ", \"outputs\": [";
        for (std::size_t i = 0; i < plan.outputs.size(); ++i)
          std::cout << (i ? ", " : "") << binding_json(plan.outputs[i], buffers);
        std::cout << "], \"allocations\": " << allocations << ", \"frees\": " << frees << "}\n";
      } catch (const std::exception& e) {
        std::cout << "{\"error\": " << json_str(e.what()) << "}\n";
      }
    } else {
      std::cerr << "io_plan_test: unknown line kind '" << kind << "'\n";
      return 2;
    }
  }
  return 0;
}
