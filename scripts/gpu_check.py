"""`make gpu-check`: what can only be checked on a machine with an NVIDIA GPU, in one JSON.

Checks (each "ok", "fail" or "skip" with the reason):
  torch-cuda-eager     the pruned model on CUDA vs CPU eager (embeds max |diff|, kept equal), latency
  torch-cuda-compiled  torch.compile of the same on CUDA vs CPU eager
  aoti-cuda            torch.export + AOTInductor package compiled for CUDA vs CPU eager
  ort-cuda             the exported ONNX under onnxruntime's CUDAExecutionProvider (needs onnxruntime-gpu)
  tensorrt             `madtp-deploy build` and `polygraphy run --trt --onnxrt` on both export shapes
                       (dynamic, static); the commands are recorded even when skipped
  tensorrt-static-build    the static-shape image graph (capacities from the IO contract's examples)
                           built into an engine through polygraphy (madtp_deploy.trt.build_engine)
  tensorrt-static-session  that engine through the Python TensorRT session vs the static eager model
                           (embeds within ATOL; kept and overflow equal), latency
  tensorrt-static-cpp      that engine through engines/cpp's TensorRT backend (madtp_infer --engine,
                           configured with TENSORRT_ROOT), same comparison, its latency
The TensorRT checks ask the CUDA driver (cuda-python) for the GPU, not torch: the project's
environment holds the CPU torch. No GPU here: on the development machines every check skips, and
the JSON says why.

    python scripts/gpu_check.py --output export/gpu_check.json [--model shipped] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

import madtp_deploy
from madtp_deploy.files import write_text_atomic
from madtp_deploy.onnx import io as onnx_io

ATOL = 1e-3  # CUDA kernels (TF32 off) against CPU eager; kept must be equal


def _compare(want: dict, got_embeds, got_kept) -> dict:
    e = np.asarray(got_embeds.detach().cpu() if torch.is_tensor(got_embeds) else got_embeds)
    k = np.asarray(got_kept.detach().cpu() if torch.is_tensor(got_kept) else got_kept)
    diff = float(np.abs(e - want["embeds"]).max())
    kept_equal = bool(np.array_equal(k, want["kept"]))
    return {"status": "ok" if diff <= ATOL and kept_equal else "fail", "max_abs_diff": diff,
            "kept_equal": kept_equal, "atol": ATOL}


def _latency_ms(fn, runs: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(runs):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t) / runs


def _no_cuda() -> str | None:
    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return None


def check_torch(ctx, compiled: bool) -> dict:
    if why := _no_cuda():
        return {"status": "skip", "reason": why}
    model = madtp_deploy.load(ctx.model, mode="invariant").cuda().eval()
    fn = torch.compile(model.encode_image, dynamic=True) if compiled else model.encode_image
    x = ctx.inputs["pixels"].cuda()
    with torch.no_grad():
        e = fn(x)
        r = _compare(ctx.want, e.embeds, e.kept)
        r["latency_ms"] = _latency_ms(lambda: fn(x))
    return r


def check_aoti(ctx) -> dict:
    if why := _no_cuda():
        return {"status": "skip", "reason": why}
    model = madtp_deploy.load(ctx.model, mode="invariant").cuda().eval()
    io = onnx_io.encoder_io(model, "image")
    x = ctx.inputs["pixels"].cuda()
    batch = torch.export.Dim("batch", min=1, max=64)
    with torch.no_grad():
        program = torch.export.export(io.wrapper(model), (x[:2],), dynamic_shapes={"inputs": ({0: batch},)},
                                      strict=False)
        pkg = torch._inductor.aoti_compile_and_package(program, package_path=str(ctx.work / "image.cuda.pt2"))
        runner = torch._inductor.aoti_load_package(pkg)
        embeds, kept = runner(x)[:2]
        r = _compare(ctx.want, embeds, kept)
        r["latency_ms"] = _latency_ms(lambda: runner(x))
    return r


def check_ort_cuda(ctx) -> dict:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"status": "skip", "reason": f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                                            f"(the CPU build; install the [gpu] extra in its own environment)"}
    if why := _no_cuda():
        return {"status": "skip", "reason": why}
    from madtp_deploy.runtime import open_session

    s = open_session(ctx.onnx("dynamic") / f"{ctx.name}.image.onnx", backend="ort-cuda")
    feed = {"pixels": ctx.inputs["pixels"].numpy()}
    got = s.run(feed)
    r = _compare(ctx.want, got["embeds"], got["kept"])
    t = time.perf_counter()
    for _ in range(20):
        s.run(feed)
    r["latency_ms"] = 1000 * (time.perf_counter() - t) / 20
    return r


def trt_commands(ctx) -> dict[str, list[str]]:
    """The build and compare commands for both export shapes (recorded even where they cannot run)."""
    s, b = ctx.spec.image_size, ctx.batch
    shapes = f"--trt-min-shapes pixels:[1,3,{s},{s}] --trt-opt-shapes pixels:[{b},3,{s},{s}] " \
             f"--trt-max-shapes pixels:[32,3,{s},{s}] --input-shapes pixels:[{b},3,{s},{s}]"
    out = {}
    for kind in ("dynamic", "static"):
        onnx = ctx.work / kind / f"{ctx.name}.image.onnx"
        out[kind] = [f"madtp-deploy export --model {ctx.model} --shapes {kind} --output {onnx.parent} --no-validate",
                     f"madtp-deploy build {onnx} --batch-sizes 1,{b},32 --output {ctx.work / 'engines'}",
                     f"polygraphy run {onnx} --trt --onnxrt {shapes} --atol 1e-4 --rtol 1e-4"]
    return out


def _no_tensorrt() -> str | None:
    """Why the TensorRT checks cannot run here, or None: TensorRT, polygraphy, and a GPU the CUDA
    driver sees (asked through cuda-python like `madtp-deploy build`, not through the CPU torch)."""
    from madtp_deploy.errors import MadtpError
    from madtp_deploy.trt.build import compute_capability

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "import tensorrt failed (not installed; its wheels need NVIDIA's package index)"
    try:
        import polygraphy  # noqa: F401
    except ImportError:
        return "import polygraphy failed (pip install 'madtp-deploy[trt]')"
    try:
        compute_capability()
    except MadtpError as exc:
        return str(exc)
    return None


def check_tensorrt(ctx) -> dict:
    commands = trt_commands(ctx)
    if why := _no_tensorrt():
        return {"status": "skip", "reason": why, "commands": commands}
    import tensorrt
    runs = {}
    for kind, cmds in commands.items():
        runs[kind] = []
        for cmd in cmds:
            p = subprocess.run(shlex.split(cmd), capture_output=True, text=True)
            runs[kind].append({"command": cmd, "rc": p.returncode, "tail": (p.stdout + p.stderr)[-2000:]})
            if p.returncode != 0:
                break
    ok = all(r["rc"] == 0 for rs in runs.values() for r in rs)
    return {"status": "ok" if ok else "fail", "tensorrt": tensorrt.__version__, "runs": runs}


class Context:
    def __init__(self, model: str, batch: int, work: Path):
        self.model, self.batch, self.work = model, batch, work
        m = madtp_deploy.load(model, mode="invariant")
        self.spec, self.name = m.spec, m.spec.name
        io = onnx_io.encoder_io(m, "image")
        self.inputs = io.example(m.spec, batch, seed=0)
        self.want = io.eager(m, self.inputs)
        self._m, self._onnx = m, {}
        self.plan, self.results = None, {}
        self.static_inputs = self.want_static = None

    def static_onnx(self) -> Path:
        """The static-shape image graph: capacities at the default quantile of the keep counts the
        model gives the IO contract's examples (as tests/onnx/test_static_export.py fits them); the
        static eager model's answers on the check's inputs are kept to compare against."""
        from madtp_deploy import capacity
        from madtp_deploy.onnx.export import export_model

        m = madtp_deploy.load(self.model, mode="invariant")
        io = onnx_io.encoder_io(m, "image")
        demand = capacity.measure_demand(m, "image", io.example(m.spec, 64, seed=2))
        capacity.apply(m, {"image": capacity.profile_from_demand("image", demand, capacity.DEFAULT_QUANTILE,
                                                                 {"data": "io examples, seed 2"})})
        static_io = onnx_io.encoder_io(m, "image")
        self.static_inputs = self.inputs
        self.want_static = static_io.eager(m, self.static_inputs)
        out = self.work / "static"
        export_model(m, out, self.name, source=self.model, encoders=("image",), validate=False, log=lambda *_: None)
        return out / f"{self.name}.image.onnx"

    def onnx(self, kind: str) -> Path:
        if kind not in self._onnx:
            from madtp_deploy.onnx.export import export_model

            out = self.work / kind
            export_model(self._m, out, self.name, source=self.model, encoders=("image",), validate=False,
                         log=lambda *_: None)
            self._onnx[kind] = out
        return self._onnx[kind]


def _compare_static(want: dict, got: dict) -> dict:
    r = _compare(want, got["embeds"], got["kept"])
    r["overflow_equal"] = bool(np.array_equal(np.asarray(got.get("overflow")), want["overflow"]))
    if not r["overflow_equal"]:
        r["status"] = "fail"
    return r


def check_trt_static_build(ctx) -> dict:
    if why := _no_tensorrt():
        return {"status": "skip", "reason": why}
    from madtp_deploy.trt.build import build_engine

    onnx = ctx.static_onnx()
    b = ctx.batch
    ctx.plan = build_engine(onnx, engines_dir=ctx.work / "engines", batch=(1, b, max(b, 32)), log=lambda *_: None)
    side = json.loads(ctx.plan.with_suffix(".json").read_text())
    return {"status": "ok", "engine": str(ctx.plan), "build_s": side["build_s"], "tensorrt": side["tensorrt"],
            "compute_capability": side["compute_capability"]}


def _needs_engine(ctx) -> str | None:
    if ctx.plan is None:
        why = ctx.results.get("tensorrt-static-build", {}).get("reason", "not run")
        return f"needs the static engine, which tensorrt-static-build did not make ({why})"
    return None


def check_trt_static_session(ctx) -> dict:
    if why := _needs_engine(ctx):
        return {"status": "skip", "reason": why}
    from madtp_deploy.runtime import open_session

    s = open_session(ctx.plan, backend="trt")
    feed = {k: v.numpy() for k, v in ctx.static_inputs.items()}
    r = _compare_static(ctx.want_static, s.run(feed))
    t = time.perf_counter()
    for _ in range(20):
        s.run(feed)
    r["latency_ms"] = 1000 * (time.perf_counter() - t) / 20
    return r


def _tensorrt_root() -> tuple[str | None, str | None]:
    """(TENSORRT_ROOT, None) or (None, why not): the SDK folder with include/NvInfer.h."""
    root = os.environ.get("TENSORRT_ROOT")
    if not root:
        return None, "TENSORRT_ROOT is not set (the TensorRT SDK folder with include/NvInfer.h and lib/libnvinfer.so)"
    if not (Path(root) / "include" / "NvInfer.h").is_file():
        return None, f"TENSORRT_ROOT={root} has no include/NvInfer.h"
    return root, None


def check_trt_static_cpp(ctx) -> dict:
    if why := _needs_engine(ctx):
        return {"status": "skip", "reason": why}
    import shutil

    root, why = _tensorrt_root()
    if why:
        return {"status": "skip", "reason": why}
    if shutil.which("cmake") is None:
        return {"status": "skip", "reason": "cmake not on PATH"}
    from madtp_deploy.aoti import cpp_app_dir, write_raw

    build = ctx.work / "cpp-trt"
    cfg = ["cmake", "-S", str(cpp_app_dir()), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
           f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", "-DMADTP_WITH_TENSORRT=ON", f"-DTENSORRT_ROOT={root}"]
    for cmd in (cfg, ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0 or (cmd is cfg and "TensorRT backend ON" not in p.stdout + p.stderr):
            return {"status": "fail", "reason": f"`{' '.join(cmd[:3])}` did not build the TensorRT backend",
                    "tail": (p.stdout + p.stderr)[-2000:]}
    raw = ctx.work / "static-images.raw"
    write_raw(raw, ctx.static_inputs["pixels"].numpy())
    p = subprocess.run([str(build / "madtp_infer"), "--engine", str(ctx.plan), "--repeat", "20", "--warmup", "3",
                        str(raw)], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        return {"status": "fail", "reason": p.stderr.strip()[-500:]}
    got = json.loads(p.stdout)
    r = _compare_static(ctx.want_static, {k: np.asarray(got[k]) for k in ("embeds", "kept", "overflow") if k in got})
    r["latency_ms"] = got["latency_ms"]
    return r


CHECKS = {"torch-cuda-eager": lambda c: check_torch(c, False), "torch-cuda-compiled": lambda c: check_torch(c, True),
          "aoti-cuda": check_aoti, "ort-cuda": check_ort_cuda, "tensorrt": check_tensorrt,
          "tensorrt-static-build": check_trt_static_build, "tensorrt-static-session": check_trt_static_session,
          "tensorrt-static-cpp": check_trt_static_cpp}


def run(model: str = "shipped", batch: int = 8, work: Path | None = None) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    work = Path(work or tempfile.mkdtemp(prefix="madtp-gpu-check-"))
    ctx = Context(model, batch, work)
    results = ctx.results
    for name, fn in CHECKS.items():
        try:
            results[name] = fn(ctx)
        except Exception as exc:  # noqa: BLE001 - a failing check is a result, not a crash
            results[name] = {"status": "fail", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                             "traceback": traceback.format_exc()[-2000:]}
    return {"model": model, "batch": batch, "machine": {
                "python": platform.python_version(), "torch": torch.__version__,
                "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "checks": results,
            "summary": {s: sorted(k for k, v in results.items() if v["status"] == s) for s in ("ok", "fail", "skip")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="GPU-only checks (CUDA, AOTInductor, onnxruntime-gpu, TensorRT)")
    ap.add_argument("--output", type=Path, default=Path("export/gpu_check.json"))
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    r = run(args.model, args.batch)
    write_text_atomic(args.output, json.dumps(r, indent=2))
    for name, v in r["checks"].items():
        print(f"{name:20} {v['status']:5} {v.get('reason', '')}")
    print(f"wrote {args.output}")
    return 1 if r["summary"]["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
