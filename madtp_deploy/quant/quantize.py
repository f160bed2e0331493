"""Static INT8 quantization of an exported encoder into a Q/DQ ONNX, the pruning path kept in float.

onnxruntime's quantizer runs in this environment. NVIDIA ModelOpt's (INT8, FP8) runs in its own
(`make modelopt-env`: it installs onnxruntime-gpu, which would overwrite this one) through a
subprocess; nothing here imports it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CalibrationError
from ..files import atomic, temp_dir
from . import graph
from .calibset import read_sidecar, sha256_file

METHODS = ("minmax", "entropy", "percentile")
QUANTIZERS = ("ort", "modelopt")
OP_TYPES = ("MatMul", "Gemm", "Conv")
# made by `make modelopt-env` in the repository root; MADTP_MODELOPT_PYTHON points elsewhere
MODELOPT_PYTHON = Path(os.environ.get("MADTP_MODELOPT_PYTHON",
                                      Path(__file__).resolve().parents[2] / ".venv-modelopt" / "bin" / "python"))
SIDECAR_SCHEMA = "madtp-deploy/quantized/1"


@dataclass
class QuantConfig:
    method: str = "minmax"
    quantizer: str = "ort"              # ort | modelopt
    precision: str = "int8"             # int8 | fp8 (fp8: modelopt only)
    quantize_pruning_path: bool = False  # True: quantize the score MatMuls too (for the comparison)
    float_copy: bool = True             # the path reads float tensors, never a shared Q/DQ copy
    score_minmax: bool = False          # tensors entering the path keep their full (min, max) range
    float_stem: bool = True             # the patch-embedding Conv (reads the pixels) stays in float
    exclude_feeders: bool = False       # also keep in float the dense MatMuls that feed the path (in_proj)
    also_exclude: tuple = ()            # more node names to keep in float
    per_channel: bool = False
    batch: int = 16                     # calibration batch
    op_types: tuple = OP_TYPES
    extra: dict = field(default_factory=dict)

    def check(self) -> "QuantConfig":
        if self.method not in METHODS:
            raise CalibrationError(f"--method {self.method!r}: unknown; fix: one of {', '.join(METHODS)}")
        if self.quantizer not in QUANTIZERS:
            raise CalibrationError(f"--quantizer {self.quantizer!r}: unknown; fix: one of {', '.join(QUANTIZERS)}")
        if self.precision not in ("int8", "fp8"):
            raise CalibrationError(f"--precision {self.precision!r}: unknown; fix: int8 or fp8")
        if self.precision == "fp8" and self.quantizer != "modelopt":
            raise CalibrationError("--precision fp8: only ModelOpt writes FP8 Q/DQ here; fix: add --quantizer modelopt")
        if self.quantizer == "modelopt":
            if self.method == "percentile":
                raise CalibrationError("--method percentile: ModelOpt calibrates with max or entropy; fix: "
                                       "--method minmax or entropy")
            why = modelopt_available()
            if why:
                raise CalibrationError(f"--quantizer modelopt: {why}; fix: run `make modelopt-env` (its own "
                                       f"venv: ModelOpt pulls onnxruntime-gpu, never install it into .venv)")
        return self


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over named arrays, `batch` rows at a time."""

    def __init__(self, arrays: dict[str, np.ndarray], batch: int):
        n = len(next(iter(arrays.values())))
        self._feeds = [{k: v[i:i + batch] for k, v in arrays.items()} for i in range(0, n, batch)]
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._feeds)

    def __len__(self):
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int):
        self._it = iter(self._feeds[start_index:end_index])


def _versions() -> dict:
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def preprocess(src: Path, dst: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # symbolic shape inference fails on the data-dependent TopK K ("Incomplete symbolic shape inference")
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's many error types
        raise CalibrationError(f"{src}: onnxruntime's quant_pre_process failed ({str(exc).splitlines()[0][:200]}); "
                               f"fix: re-export the encoder with `madtp-deploy export`") from exc


def _feeders(model, path: graph.PruningPath, quantized: set[str]) -> list[str]:
    """Activation inputs of quantized MatMuls on the path or feeding it directly."""
    g = model.graph
    const = graph._constant_tensors(g)
    consumers: dict[str, set[str]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, set()).add(n.name)
    out = []
    for n in g.node:
        if n.name in quantized and (n.name in path.nodes or
                                    any(c in path.nodes for o in n.output for c in consumers.get(o, ()))):
            out += [i for i in n.input[:2] if i and i not in const and i not in out]
    return out


def tensor_ranges(model_path: Path, tensors: list[str], arrays: dict[str, np.ndarray], batch: int) -> dict:
    """Full (min, max) of named intermediate tensors over the calibration set."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(model_path))
    known = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in known)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    n = len(next(iter(arrays.values())))
    for i in range(0, n, batch):
        outs = sess.run(tensors, {k: v[i:i + batch] for k, v in arrays.items()})
        for t, v in zip(tensors, outs):
            lo[t], hi[t] = min(lo[t], float(v.min())), max(hi[t], float(v.max()))
    return {t: (lo[t], hi[t]) for t in tensors}


def _quantized_nodes(model) -> set[str]:
    producer = {o: n for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node if n.op_type in OP_TYPES
            and any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input)}


def _ort_quantize(pre: Path, out: Path, arrays, cfg: QuantConfig, exclude: list[str], overrides: dict) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.method]
    extra: dict = {"TensorQuantOverrides": overrides} if overrides else {}
    if cfg.method != "minmax":
        # The histogram collectors stack every batch's tensors into one array, which fails when the
        # token count differs between batches (it does: pruning). One batch per collection pass
        # ("strided" calibration, the histograms merged between passes) avoids the stacking.
        extra["CalibStridedMinMax"] = 1
    extra.update(cfg.extra)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # one "Expected bias ... to be an initializer" warning per MatMul + Add
    try:
        # uint8 activations, int8 weights, full range: onnxruntime's advice for x86 CPUs with VNNI
        quantize_static(str(pre), str(out), _Reader(arrays, cfg.batch), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(cfg.op_types), per_channel=cfg.per_channel, reduce_range=False,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=exclude, calibrate_method=method, extra_options=extra)
    finally:
        root.setLevel(level)


def _modelopt_quantize(pre: Path, out: Path, arrays, cfg: QuantConfig, exclude: list[str], work: Path,
                       python: Path = MODELOPT_PYTHON) -> str:
    npz = work / "calib.npz"
    np.savez(npz, **arrays)
    method = {"minmax": "max", "entropy": "entropy"}[cfg.method]
    cmd = [str(python), "-m", "modelopt.onnx.quantization", "--onnx_path", str(pre), "--quantize_mode",
           cfg.precision, "--calibration_method", method, "--calibration_data_path", str(npz),
           "--output_path", str(out), "--high_precision_dtype", "fp32", "--calibration_eps", "cpu",
           "--op_types_to_quantize", *cfg.op_types]
    if exclude:
        cmd += ["--nodes_to_exclude", *exclude]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    if r.returncode != 0 or not out.is_file():
        lines = [ln for ln in (r.stderr + r.stdout).strip().splitlines() if ln.strip()]
        raise CalibrationError(f"{pre.name}: ModelOpt {cfg.precision} quantization failed "
                               f"({(lines[-1] if lines else 'no output')[:240]}); fix: see the log with "
                               f"`{' '.join(cmd[:3])} --help`")
    v = subprocess.run([str(python), "-c", "import modelopt, onnxruntime; print(modelopt.__version__, "
                        "onnxruntime.__version__)"], capture_output=True, text=True)
    return v.stdout.strip()


def quantize_file(src: Path, arrays: dict[str, np.ndarray], out: Path, cfg: QuantConfig,
                  calibration: dict, log=print) -> dict:
    """Write `out` (Q/DQ ONNX) and its sidecar `out`.json; returns the sidecar. Atomic."""
    import contextlib
    import io

    import onnx

    cfg.check()
    src, out = Path(src), Path(out)
    side = read_sidecar(src)
    t0 = time.perf_counter()
    with temp_dir(".quant-") as work:
        pre = work / "pre.onnx"
        preprocess(src, pre)
        model = onnx.load(str(pre))
        path = graph.find_pruning_path(model)
        exclude = [] if cfg.quantize_pruning_path else list(path.matmuls)
        stem = graph.stem_nodes(model)
        if cfg.float_stem:
            exclude += [n for n in stem if n not in exclude]
        if cfg.exclude_feeders:
            exclude += [n for n in graph.path_feeders(model, path) if n not in exclude]
        exclude += [n for n in cfg.also_exclude if n not in exclude]
        candidates = {n.name for n in model.graph.node if n.op_type in cfg.op_types} - set(exclude)
        overrides, feeders = {}, []
        if cfg.score_minmax:
            feeders = _feeders(model, path, candidates)
            ranges = tensor_ranges(pre, feeders, arrays, cfg.batch)
            overrides = {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for t, (lo, hi) in ranges.items()}
        q_path = work / "q.onnx"
        log(f"quantizing {src.name}: {cfg.quantizer} {cfg.precision}, {cfg.method}, "
            f"{len(next(iter(arrays.values())))} samples, pruning path "
            f"{'quantized' if cfg.quantize_pruning_path else 'in float'}, {len(exclude)} nodes kept in float")
        tool_versions = _versions()
        if cfg.quantizer == "ort":
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
                _ort_quantize(pre, q_path, arrays, cfg, exclude, overrides)
        else:
            tool_versions["modelopt_env"] = _modelopt_quantize(pre, q_path, arrays, cfg, exclude, work)
        q = onnx.load(str(q_path))
        quantized = _quantized_nodes(q)
        float_nodes = path.nodes - quantized
        rewired = graph.float_copy(q, float_nodes) if cfg.float_copy else 0
        dropped = graph.drop_unused_qdq(q)
        with atomic(out) as tmp:  # the graph is renamed into place only after its sidecar is written
            onnx.save(q, str(tmp))
            sidecar = {k: v for k, v in side.items() if k not in ("validation", "file_sha256")}
            sidecar.update({
                "schema": SIDECAR_SCHEMA,
                "file_sha256": sha256_file(tmp),
                "precision": cfg.precision,
                "quantization": {
                    "tool": ("onnxruntime.quantization.quantize_static (QDQ, uint8 activations, int8 weights)"
                             if cfg.quantizer == "ort" else f"modelopt.onnx.quantization ({cfg.precision})"),
                    "config": asdict(cfg) | {"op_types": list(cfg.op_types), "also_exclude": list(cfg.also_exclude)},
                    "samples": int(len(next(iter(arrays.values())))),
                    "pruning_path": "quantized" if cfg.quantize_pruning_path else "float",
                    "excluded_nodes": exclude,
                    "path_feeders": graph.path_feeders(model, path),
                    "path_matmul_roles": path.roles,
                    "path_nodes": len(path.nodes),
                    "quantized_nodes": sorted(quantized),
                    "float_copy_rewired_inputs": rewired,
                    "unused_qdq_removed": dropped,
                    "path_inputs_still_quantized": graph.quantized_path_inputs(q, float_nodes),
                    "score_minmax_tensors": feeders,
                    "preprocess": "onnxruntime quant_pre_process(skip_symbolic_shape=True)",
                    "seconds": round(time.perf_counter() - t0, 1),
                },
                "calibration": calibration,
                "source_onnx": {"file": src.name, "sha256": sha256_file(src)},
                "quant_versions": tool_versions,
            })
            with atomic(out.with_suffix(".json")) as side_tmp:
                side_tmp.write_text(json.dumps(sidecar, indent=2))
    return sidecar


def modelopt_available(python: Path = MODELOPT_PYTHON) -> str | None:
    """None if ModelOpt's venv is there, else why not."""
    if not Path(python).is_file():
        return f"{python} missing"
    if not os.access(python, os.X_OK):
        return f"{python} is not executable"
    return None


def code_sha256() -> str:
    """A hash of the quantizer's code (this file and graph.py): an INT8 graph cached by another version
    of it is made again."""
    import hashlib

    h = hashlib.sha256()
    for name in ("quantize.py", "graph.py"):
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()
