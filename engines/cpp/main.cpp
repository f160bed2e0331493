// madtp_infer: run an exported MADTP image encoder from C++.
//
//   madtp_infer --package export/m.image.pt2 [--repeat N] [--warmup N] IMAGE.raw [IMAGE.raw ...]
//   madtp_infer --engine engines/m.plan ...            (only if built with MADTP_WITH_TENSORRT)
//
// IMAGE.raw (written by madtp_deploy.aoti.write_raw): 8 bytes "MADTPRAW", int64 rank, int64 dims,
// float32 data, all little-endian; [3,H,W] or [B,3,H,W]. The files are stacked into one batch.
// Prints one JSON object: backend, batch, embeds [B][E], kept [B][layers] (tokens each instance
// keeps after each layer), overflow [B][layers] (static graphs: which instance wanted more slots
// than a layer has; absent otherwise), latency_ms (mean, min, max over --repeat runs after --warmup
// runs). The TensorRT backend binds its buffers and copies the images in before the timed runs,
// and the outputs out after them: its latency is the engine's (enqueueV3 + sync); the AOTInductor
// package's includes its own host work, as a call of the package does.

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <utility>
#include <iomanip>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef MADTP_WITH_TENSORRT
#include "trt_backend.h"
#endif

namespace {

struct Args {
  std::string package, engine;
  int repeat = 10, warmup = 2;
  std::vector<std::string> images;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "madtp_infer: error: " << why
            << "; usage: madtp_infer (--package M.pt2 | --engine M.plan) [--repeat N] [--warmup N] IMAGE.raw...\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(s + " needs a value");
      return argv[++i];
    };
    if (s == "--package") a.package = value();
    else if (s == "--engine") a.engine = value();
    else if (s == "--repeat") a.repeat = std::stoi(value());
    else if (s == "--warmup") a.warmup = std::stoi(value());
    else if (s.rfind("--", 0) == 0) usage("unknown option " + s);
    else a.images.push_back(s);
  }
  if (a.package.empty() == a.engine.empty()) usage("pass exactly one of --package and --engine");
  if (a.images.empty()) usage("no IMAGE.raw files");
  if (a.repeat < 1 || a.warmup < 0) usage("--repeat must be >= 1 and --warmup >= 0");
  return a;
}

at::Tensor read_raw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  char magic[8];
  int64_t rank = 0;
  f.read(magic, 8);
  f.read(reinterpret_cast<char*>(&rank), 8);
  if (!f || std::memcmp(magic, "MADTPRAW", 8) != 0 || rank < 1 || rank > 8)
    throw std::runtime_error(path + ": not a MADTPRAW file; write it with madtp_deploy.aoti.write_raw");
  std::vector<int64_t> dims(rank);
  f.read(reinterpret_cast<char*>(dims.data()), 8 * rank);
  auto t = at::empty(dims, at::kFloat);
  f.read(reinterpret_cast<char*>(t.data_ptr<float>()), t.numel() * sizeof(float));
  if (!f) throw std::runtime_error(path + ": truncated (fewer floats than its dims say)");
  return rank == 3 ? t.unsqueeze(0) : t;
}

using Named = std::vector<std::pair<std::string, at::Tensor>>;

// A backend as the latency loop sees it: prepare once (untimed), step (timed), fetch the outputs.
struct Runner {
  std::function<void()> prepare = [] {};
  std::function<void()> step;
  std::function<Named()> fetch;
};

const at::Tensor* find(const Named& outs, const std::string& name) {
  for (const auto& [n, t] : outs)
    if (n == name) return &t;
  return nullptr;
}

void print_matrix(const at::Tensor& t) {
  auto c = t.contiguous();
  std::cout << "[";
  for (int64_t i = 0; i < c.size(0); ++i) {
    std::cout << (i ? ", [" : "[");
    for (int64_t j = 0; j < c.size(1); ++j) {
      if (j) std::cout << ", ";
      if (c.scalar_type() == at::kBool) std::cout << (c[i][j].item<bool>() ? "true" : "false");
      else if (c.is_floating_point()) std::cout << c[i][j].item<float>();
      else std::cout << c[i][j].item<int64_t>();
    }
    std::cout << "]";
  }
  std::cout << "]";
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
#ifndef MADTP_WITH_TENSORRT
  if (!args.engine.empty())
    usage("--engine: this build has no TensorRT backend; rebuild with -DMADTP_WITH_TENSORRT=ON and TENSORRT_ROOT");
#endif
  try {
    std::vector<at::Tensor> parts;
    for (const auto& p : args.images) parts.push_back(read_raw(p));
    at::Tensor pixels = at::cat(parts, 0).contiguous();

    std::string backend;
    Runner run;
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
#ifdef MADTP_WITH_TENSORRT
    std::unique_ptr<madtp::TrtEngine> engine;
#endif
    std::vector<at::Tensor> aoti_out;
    if (!args.package.empty()) {
      backend = "aoti";
      loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(args.package);
      run.step = [&] { aoti_out = loader->run({pixels}); };
      run.fetch = [&] {  // the exported graph's outputs, in its order (onnx/io.py)
        Named named;
        const char* names[] = {"embeds", "kept", "overflow"};
        for (std::size_t i = 0; i < aoti_out.size() && i < 3; ++i) named.emplace_back(names[i], aoti_out[i]);
        return named;
      };
    } else {
#ifdef MADTP_WITH_TENSORRT
      backend = "trt";
      engine = std::make_unique<madtp::TrtEngine>(args.engine);
      run.prepare = [&] { engine->prepare(pixels); };
      run.step = [&] { engine->execute(); };
      run.fetch = [&] { return engine->outputs(); };
#endif
    }

    c10::InferenceMode guard;
    run.prepare();
    for (int i = 0; i < args.warmup; ++i) run.step();
    std::vector<double> ms;
    for (int i = 0; i < args.repeat; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      run.step();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    Named out = run.fetch();
    const at::Tensor* embeds = find(out, "embeds");
    const at::Tensor* kept = find(out, "kept");
    const at::Tensor* overflow = find(out, "overflow");
    if (!embeds || !kept) throw std::runtime_error("the model returned " + std::to_string(out.size()) +
                                                   " outputs; expected embeds and kept");
    double mean = 0;
    for (double v : ms) mean += v / ms.size();
    std::cout << std::setprecision(9) << "{\"backend\": \"" << backend << "\", \"batch\": " << pixels.size(0)
              << ", \"embeds\": ";
    print_matrix(embeds->to(at::kCPU).to(at::kFloat));
    std::cout << ", \"kept\": ";
    print_matrix(kept->to(at::kCPU).to(at::kLong));
    if (overflow) {
      std::cout << ", \"overflow\": ";
      print_matrix(overflow->to(at::kCPU).to(at::kBool));
    }
    std::cout << ", \"latency_ms\": {\"mean\": " << mean << ", \"min\": " << *std::min_element(ms.begin(), ms.end())
              << ", \"max\": " << *std::max_element(ms.begin(), ms.end()) << ", \"runs\": " << ms.size() << "}}\n";
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::cerr << "madtp_infer: error: " << what.substr(0, what.find('\n')) << "\n";
    return 2;
  }
  return 0;
}
