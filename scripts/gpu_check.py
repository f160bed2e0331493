"""`make gpu-check`: what can only be checked on a machine with an NVIDIA GPU, in one JSON.

Checks (each "ok", "fail" or "skip" with the reason):
  torch-cuda-eager     the pruned model on CUDA vs CPU eager (embeds max |diff|, kept equal), latency
  torch-cuda-compiled  torch.compile of the same on CUDA vs CPU eager
  aoti-cuda            torch.export + AOTInductor package compiled for CUDA vs CPU eager
  ort-cuda             the exported ONNX under onnxruntime's CUDAExecutionProvider (needs onnxruntime-gpu)
  tensorrt             `madtp-deploy build` and `polygraphy run --trt --onnxrt` on both export shapes
                       (dynamic, static); the commands are recorded even when skipped
No GPU here: on the development machines every check skips, and the JSON says why.

    python scripts/gpu_check.py --output export/gpu_check.json [--model shipped] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
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


def check_tensorrt(ctx) -> dict:
    commands = trt_commands(ctx)
    try:
        import tensorrt
    except ImportError:
        return {"status": "skip", "reason": "import tensorrt failed (not installed; its wheels need NVIDIA's "
                                            "package index)", "commands": commands}
    if why := _no_cuda():
        return {"status": "skip", "reason": why, "commands": commands}
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

    def onnx(self, kind: str) -> Path:
        if kind not in self._onnx:
            from madtp_deploy.onnx.export import export_model

            out = self.work / kind
            export_model(self._m, out, self.name, source=self.model, encoders=("image",), validate=False,
                         log=lambda *_: None)
            self._onnx[kind] = out
        return self._onnx[kind]


CHECKS = {"torch-cuda-eager": lambda c: check_torch(c, False), "torch-cuda-compiled": lambda c: check_torch(c, True),
          "aoti-cuda": check_aoti, "ort-cuda": check_ort_cuda, "tensorrt": check_tensorrt}


def run(model: str = "shipped", batch: int = 8, work: Path | None = None) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    work = Path(work or tempfile.mkdtemp(prefix="madtp-gpu-check-"))
    ctx = Context(model, batch, work)
    results = {}
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
