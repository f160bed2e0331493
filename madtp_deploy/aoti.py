"""AOTInductor packages of the pruned encoders (`madtp-deploy export --format aoti`).

torch.export traces the IO contract's wrapper with a dynamic batch (and text length); the keep
count K of every layer stays data-dependent (an unbacked symbol), exactly as in eager and in the
dynamic ONNX graph, so every instance gets its own invariant answer and its own FLOPs. Dynamic
shapes are the right choice here, unlike for TensorRT: AOTInductor has no fused kernels that refuse
data-dependent shapes, and a static (capacity) graph would compute capacity FLOPs for everyone.

`aoti_compile_and_package` compiles for the CPU it runs on (`-march=native`): build the package
on, or for, the machine that serves it. The package is loaded from C++ with
`torch::inductor::AOTIModelPackageLoader` (engines/cpp/) or from Python with
`torch._inductor.aoti_load_package` (runtime backend "aoti"). Each package has a JSON sidecar.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, ExportError
from .files import atomic, write_text_atomic
from . import families
from .onnx import io as onnx_io

SUFFIX = ".pt2"
RAW_MAGIC = b"MADTPRAW"  # the raw float32 image file the C++ app reads (see write_raw)


def _dynamic_shapes(io: onnx_io.EncoderIO, max_batch: int) -> dict:
    dims = {"batch": torch.export.Dim("batch", min=1, max=max_batch)}
    dims |= {a: torch.export.Dim(a, min=io.min_sizes[a], max=io.max_sizes[a]) for a in io.max_sizes}
    return {"inputs": tuple({i: dims[a] for i, a in enumerate(t.axes) if isinstance(a, str)} for t in io.inputs)}


def compile_package(model, encoder: str, path: Path, *, max_batch: int = 64) -> dict:
    """torch.export + AOTInductor for one encoder -> `path` (.pt2); returns timings in seconds."""
    io = onnx_io.encoder_io(model, encoder)
    module = io.wrapper(model.eval()).eval()
    args = tuple(io.example(model.spec, 2).values())
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(module, args, dynamic_shapes=_dynamic_shapes(io, max_batch), strict=False)
        except Exception as exc:  # noqa: BLE001 - torch.export's many error types
            raise ExportError(f"{path.name}: torch.export failed ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0][:200]}); fix: export with --format onnx, and "
                              f"rerun with --debug for the traceback") from exc
        t1 = time.perf_counter()
        with atomic(path) as tmp:
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
    return {"export_s": round(t1 - t0, 2), "compile_s": round(time.perf_counter() - t1, 2)}


def export_aoti(model, out_dir: Path, name: str, *, source: str, encoders=("image", "text"),
                max_batch: int = 64, log=print) -> list[Path]:
    """Write <name>.<encoder>.pt2 and its JSON sidecar for each encoder."""
    from .files import file_sha256, weights_sha256
    from .onnx.export import check_output_dir

    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    written = []
    for encoder in encoders:
        io = onnx_io.encoder_io(model, encoder)
        path = out_dir / f"{name}.{encoder}{SUFFIX}"
        log(f"compiling {encoder} encoder with AOTInductor -> {path}")
        timing = compile_package(model, encoder, path, max_batch=max_batch)
        sidecar = {"format": "aoti", "family": families.of(model).name, "encoder": encoder, "io": io.to_dict(), "max_batch": max_batch,
                   "shapes": "dynamic batch, data-dependent keep counts",
                   "model": {"source": source, "spec": model.spec.to_dict(), "temperature": model.temperature,
                             "mode": model.mode, "weights_sha256": weights_sha256(model)},
                   "torch": torch.__version__, "compiled_for": "this machine's CPU (-march=native)",
                   "timing_s": timing, "file_sha256": file_sha256(path)}
        write_text_atomic(path.with_suffix(".json"), json.dumps(sidecar, indent=2))
        written += [path, path.with_suffix(".json")]
    return written


# -- the raw image file the C++ app reads -------------------------------------------------------------
# 8 bytes magic "MADTPRAW", then int64 little-endian rank and dims, then float32 little-endian data.

def write_raw(path: Path, array: np.ndarray) -> None:
    a = np.ascontiguousarray(array, dtype="<f4")
    with atomic(path) as tmp, open(tmp, "wb") as f:
        f.write(RAW_MAGIC)
        f.write(np.asarray([a.ndim, *a.shape], dtype="<i8").tobytes())
        f.write(a.tobytes())


def read_raw(path: Path) -> np.ndarray:
    data = Path(path).read_bytes()
    if data[:8] != RAW_MAGIC:
        raise DataError(f"{path}: not a MADTPRAW file (magic missing); fix: write it with madtp_deploy.aoti.write_raw")
    rank = int(np.frombuffer(data, "<i8", 1, 8)[0])
    shape = tuple(int(d) for d in np.frombuffer(data, "<i8", rank, 16))
    return np.frombuffer(data, "<f4", offset=16 + 8 * rank).reshape(shape).copy()


def cpp_app_dir() -> Path:
    """engines/cpp of a source checkout (the C++ app is not part of the wheel)."""
    return Path(__file__).resolve().parent.parent / "engines" / "cpp"


def build_cpp_app(build_dir: Path, *, jobs: int = 2, log=print) -> Path:
    """Configure and build engines/cpp against the torch wheel's libtorch; returns the executable."""
    import subprocess

    src = cpp_app_dir()
    if not (src / "CMakeLists.txt").is_file():
        raise ExportError(f"{src}/CMakeLists.txt: missing; fix: build from a source checkout of madtp-deploy")
    cmake = shutil.which("cmake")
    if cmake is None:
        raise ExportError("cmake: not found on PATH; fix: install cmake (>= 3.18) and a C++17 compiler")
    build_dir = Path(build_dir)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    cfg = [cmake, "-S", str(src), "-B", str(build_dir), *gen, "-DCMAKE_BUILD_TYPE=Release",
           f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    for cmd in (cfg, [cmake, "--build", str(build_dir), "-j", str(jobs)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
            raise ExportError(f"{src}: `{' '.join(cmd[:3])}` failed: {' | '.join(tail)[:400]}; fix: see the "
                              f"CMake output in {build_dir}")
    log(f"built {build_dir / 'madtp_infer'}")
    return build_dir / "madtp_infer"

