"""ONNX -> TensorRT engine through polygraphy (`madtp-deploy build`). NOT RUN HERE: TensorRT cannot be
installed on the development machines; written against the TensorRT 11 / polygraphy 0.53 docs.

- Profiles: one optimization profile with full (min, opt, max) shapes for every graph input, from the
  IO contract (`EncoderIO.trt_profile`): batch from `--batch-sizes min,opt,max`, text length from
  `--text-lengths` (default: the model's range, opt at the longest).
- Strongly typed networks only (TensorRT 11): precision is what the ONNX holds (fp32 exports, fp16 or
  Q/DQ graphs from quant/); no builder precision flags (`CreateConfig(fp16=True)` aborts on TRT 11).
- The graph is constant-folded first if its sidecar says it was not (madtp_deploy.onnx.fold).
- Engines are cached under `engines/` by ONNX hash, profile, precision, TensorRT version and compute
  capability (asked of the CUDA driver through cuda-python, not torch), each with a JSON sidecar
  (the graph's IO contract, model and shapes: what the TensorRT session checks its inputs against);
  one timing cache is shared by all builds.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..errors import RuntimeBackendError, UsageError
from ..files import atomic, read_json, write_text_atomic

ENGINE_SUFFIX = ".plan"
TIMING_CACHE = "timing.cache"
NO_TRT = ("TensorRT is not installed (import tensorrt failed; its wheels need NVIDIA's package index, "
          "unreachable here); fix: run `madtp-deploy build` on a GPU machine with TensorRT 10/11 and polygraphy")


def parse_triple(text: str, option: str) -> tuple[int, int, int]:
    """'1,8,32' -> (1, 8, 32); a single value means min = opt = max."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3 or not 1 <= vals[0] <= vals[1] <= vals[2]:
        raise UsageError(f"{option} {text!r}: need min,opt,max with 1 <= min <= opt <= max; fix: e.g. {option} 1,8,32")
    return vals[0], vals[1], vals[2]


def onnx_sidecar(onnx_path: Path) -> dict:
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise RuntimeBackendError(f"{onnx_path}: no such ONNX file; fix: run `madtp-deploy export` first")
    return read_json(onnx_path.with_suffix(".json"), RuntimeBackendError, "sidecar missing",
                     "export with `madtp-deploy export`, which writes it beside the .onnx")


def profile_shapes(onnx_path: Path, batch=(1, 8, 32), seq=None) -> dict[str, tuple]:
    """{input: (min_shape, opt_shape, max_shape)} for every input of the exported graph."""
    from ..onnx.io import encoder_io
    from ..specs import spec_from_dict

    side = onnx_sidecar(onnx_path)
    try:
        spec, encoder = spec_from_dict(side["model"]["spec"]), side["encoder"]
        static = side.get("shapes") == "static"
    except (KeyError, TypeError) as exc:
        raise RuntimeBackendError(f"{Path(onnx_path).with_suffix('.json')}: field {exc} missing; fix: re-export") from exc
    max_batch = int(side.get("max_batch", batch[2]))
    if batch[2] > max_batch:
        raise UsageError(f"--batch-sizes {','.join(map(str, batch))}: max {batch[2]} is above the graph's max batch "
                         f"{max_batch} ({Path(onnx_path).name}); fix: use a max <= {max_batch} or re-export with "
                         f"--max-batch")
    io = encoder_io(spec, encoder, static=static)
    shapes = io.trt_profile(batch, seq)
    graph_inputs = _onnx_input_names(onnx_path)
    if sorted(graph_inputs) != sorted(shapes):
        raise RuntimeBackendError(f"{onnx_path}: graph inputs {graph_inputs} differ from its sidecar's IO contract "
                                  f"{list(shapes)}; fix: re-export")
    return shapes


def _onnx_input_names(onnx_path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def make_profile(shapes: dict):
    from polygraphy.backend.trt import Profile

    profile = Profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.add(name, min=lo, opt=opt, max=hi)
    return profile


def make_config(shapes: dict, timing_cache: Path | None = None):
    """polygraphy's CreateConfig (a lazy loader: constructing it needs no TensorRT). No precision flags:
    TensorRT 11 networks are strongly typed."""
    from polygraphy.backend.trt import CreateConfig

    return CreateConfig(profiles=[make_profile(shapes)],
                        load_timing_cache=str(timing_cache) if timing_cache and Path(timing_cache).is_file() else None)


def trt_version() -> str:
    try:
        import tensorrt
    except ImportError as exc:
        raise RuntimeBackendError(NO_TRT) from exc
    return tensorrt.__version__


NO_CUDA_PYTHON = ("cuda-python is not installed (import cuda.bindings.driver failed); fix: pip install "
                  "'madtp-deploy[trt]' (it holds cuda-bindings) on the GPU machine")


def compute_capability(device: int = 0) -> str:
    """'sm_90' for CUDA device `device` as the CUDA driver numbers it (CUDA_VISIBLE_DEVICES applies),
    asked through cuda-python, not torch: the project's environment holds the CPU build of torch."""
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        raise RuntimeBackendError(NO_CUDA_PYTHON) from exc

    def call(name, *args):
        try:
            err, *value = getattr(driver, name)(*args)
        except Exception as exc:  # noqa: BLE001 - no libcuda.so: cuda-python raises instead of returning
            raise RuntimeBackendError(f"CUDA driver: {name} failed ({str(exc).splitlines()[0][:200]}); fix: "
                                      f"build and run engines on a machine with an NVIDIA driver and GPU") from exc
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeBackendError(f"CUDA driver: {name} returned {getattr(err, 'name', err)} (no CUDA GPU "
                                      f"visible as device {device}?); fix: build engines on the GPU that will run "
                                      f"them, and check CUDA_VISIBLE_DEVICES")
        return value[0] if value else None

    call("cuInit", 0)
    dev = call("cuDeviceGet", device)
    attr = driver.CUdevice_attribute
    major = call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    minor = call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    return f"sm_{major}{minor}"


def engine_key(onnx_sha256: str, shapes: dict, precision: str, trt: str, cc: str) -> str:
    blob = json.dumps({"onnx": onnx_sha256, "profile": {k: [list(s) for s in v] for k, v in sorted(shapes.items())},
                       "precision": precision, "tensorrt": trt, "cc": cc}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def engine_path(engines_dir: Path, onnx_path: Path, key: str, precision: str, trt: str, cc: str) -> Path:
    """engines/<stem>.<precision>.trt<version>.<cc>.<key>.plan"""
    return Path(engines_dir) / f"{Path(onnx_path).stem}.{precision}.trt{trt}.{cc}.{key}{ENGINE_SUFFIX}"


def engine_mismatch(sidecar: dict, trt: str, cc: str) -> str | None:
    """Why an engine (by its sidecar) cannot run on this TensorRT/GPU, or None."""
    built = (sidecar.get("tensorrt"), sidecar.get("compute_capability"))
    if built == (trt, cc):
        return None
    return (f"built for TensorRT {built[0]} on {built[1]}, this machine has TensorRT {trt} on {cc}; "
            f"fix: rebuild it here with `madtp-deploy build {sidecar.get('onnx', 'MODEL.onnx')}`")


def engine_sidecar(onnx_path: Path, side: dict, shapes: dict, *, sha: str, trt: str, cc: str, key: str,
                   timing_cache: Path, build_s: float) -> dict:
    """What the engine's .json records: its build (TensorRT, GPU, profile, cache key) and, copied from
    the graph's sidecar, the IO contract, model and shapes the TensorRT session is built on."""
    return {"onnx": str(onnx_path), "onnx_sha256": sha, "encoder": side.get("encoder"),
            "profile": {k: [list(s) for s in v] for k, v in shapes.items()}, "precision": side.get("precision", "fp32"),
            "tensorrt": trt, "compute_capability": cc, "strongly_typed": True, "key": key,
            "timing_cache": str(timing_cache), "build_s": build_s, "shapes": side.get("shapes", "dynamic"),
            "io": side.get("io"), "model": side.get("model")}


def build_engine(onnx_path: Path, *, engines_dir: Path = Path("engines"), batch=(1, 8, 32), seq=None,
                 force: bool = False, log=print) -> Path:
    """Build (or reuse from the cache) the engine for `onnx_path`; returns the .plan path."""
    from ..files import file_sha256

    onnx_path = Path(onnx_path)
    shapes = profile_shapes(onnx_path, batch, seq)          # usage errors before any TensorRT work
    side = onnx_sidecar(onnx_path)
    precision = side.get("precision", "fp32")
    trt, cc = trt_version(), compute_capability()
    sha = file_sha256(onnx_path)
    key = engine_key(sha, shapes, precision, trt, cc)
    out = engine_path(engines_dir, onnx_path, key, precision, trt, cc)
    if out.is_file() and out.with_suffix(".json").is_file() and not force:
        log(f"cached engine {out}")
        return out
    from polygraphy.backend.trt import engine_from_network, network_from_onnx_path, save_engine

    from ..onnx.fold import fold_file

    timing_cache = Path(engines_dir) / TIMING_CACHE
    Path(engines_dir).mkdir(parents=True, exist_ok=True)
    source = onnx_path
    if "folding" not in side:  # TensorRT's parser wants axes as initializers
        source = Path(engines_dir) / f".{onnx_path.stem}.folded.onnx"
        fold_file(onnx_path, source)
    t0 = time.perf_counter()
    try:
        network = network_from_onnx_path(str(source), strongly_typed=True)
        engine = engine_from_network(network, config=make_config(shapes, timing_cache),
                                     save_timing_cache=str(timing_cache))
    except Exception as exc:  # noqa: BLE001 - parser/builder errors
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise RuntimeBackendError(f"{onnx_path}: TensorRT build failed ({first}); fix: check it with "
                                  f"`madtp-deploy validate {onnx_path} --check-trt`, export --shapes static") from exc
    finally:
        if source != onnx_path:
            source.unlink(missing_ok=True)
    with atomic(out) as tmp:
        save_engine(engine, str(tmp))
    meta = engine_sidecar(onnx_path, side, shapes, sha=sha, trt=trt, cc=cc, key=key, timing_cache=timing_cache,
                          build_s=round(time.perf_counter() - t0, 1))
    write_text_atomic(out.with_suffix(".json"), json.dumps(meta, indent=2))
    log(f"built {out} in {meta['build_s']} s")
    return out
