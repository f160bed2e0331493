"""torch.export -> ONNX (dynamo exporter) with the pruning inside the graph; atomic artifacts."""

from __future__ import annotations

import hashlib
import logging
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import ExportError
from ..files import clean_stale_staging, file_sha256, weights_sha256
from . import io as onnx_io

MIN_OPSET = 18  # the dynamo exporter's lowest
DEFAULT_OPSET = 20


def graph_code_sha256(model) -> str:
    """A hash of the code that defines a model's exported graphs (its family's `graph_code` files):
    a cached artifact whose sidecar records another one was exported by other code."""
    from ..families import of

    root = Path(__file__).parents[1]
    h = hashlib.sha256()
    for name in of(model).graph_code:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


def versions() -> dict:
    import onnx
    import onnxruntime
    import onnxscript
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxscript": onnxscript.__version__}


def check_opset(opset: int) -> None:
    import onnx
    top = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= top:
        raise ExportError(f"--opset {opset}: the dynamo exporter writes opsets {MIN_OPSET}..{top}; "
                          f"fix: pick one in that range")


def check_output_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise ExportError(f"{out}: output folder is not writable ({exc.strerror}); fix: pass --output DIR "
                          f"that you can write to") from exc


def _export_one(model: Any, io: onnx_io.EncoderIO, path: Path, opset: int, max_batch: int) -> None:
    dims = {"batch": torch.export.Dim("batch", min=1, max=max_batch)}
    dims |= {a: torch.export.Dim(a, min=io.min_sizes[a], max=io.max_sizes[a]) for a in io.max_sizes}
    dyn = {"inputs": tuple({i: dims[a] for i, a in enumerate(t.axes) if isinstance(a, str)} for t in io.inputs)}
    module, args = io.wrapper(model), tuple(io.example(model.spec, 2).values())
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module, args, dynamic_shapes=dyn, input_names=[t.name for t in io.inputs],
                                 output_names=[t.name for t in io.outputs], opset_version=opset,
                                 dynamo=True, verbose=False,
                                 # onnxscript's optimizer miscompiles the data-dependent slices here
                                 # (kept counts differ from eager when one instance skips a layer and
                                 # another prunes); onnxruntime's own graph optimizations are safe.
                                 optimize=False)
        assert prog is not None  # dynamo=True always returns a program
        prog.save(str(path), external_data=False)


def export_model(model: Any, out_dir: Path, name: str, *, source: str, opset: int = DEFAULT_OPSET,
                 max_batch: int = 64, validate: bool = True, batch_sizes=(1, 8, 32), log=print,
                 encoders=None, weights_hash: str | None = None, fold: bool = True,
                 capacity_profiles: dict | None = None) -> list[Path]:
    """Write <name>.<encoder>.onnx with a JSON sidecar for each encoder (default: every graph of the
    model: image and text, or BLIP NLVR2's one "nlvr" graph). Nothing half-written.

    With capacities on the model (`capacity.apply`) the graphs have static shapes (an `overflow`
    output; text at the context length). `fold` constant-folds each graph (axes and shapes become
    initializers, as TensorRT's parser wants); `capacity_profiles` (encoder -> dict) are recorded.
    """
    from . import validate as val
    from .fold import fold_file

    check_opset(opset)
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    clean_stale_staging(out_dir, ".export-")  # what a killed export left behind
    model = model.eval()
    from ..families import of

    common: dict[str, Any] = {"family": of(model).name, "model": {"source": source, "spec": model.spec.to_dict(), "temperature": model.temperature,
                        "mode": model.mode, "weights_sha256": weights_hash or weights_sha256(model),
                        "graph_code_sha256": graph_code_sha256(model)},
              "opset": opset, "exporter": "torch.onnx.export(dynamo=True)", "versions": versions(),
              "max_batch": max_batch}
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    written = []
    try:
        for encoder in encoders or onnx_io.encoders_of(model.spec):
            io = onnx_io.encoder_io(model, encoder)
            path = staging / f"{name}.{encoder}.onnx"
            log(f"exporting the {encoder} graph -> {out_dir / path.name}")
            try:
                with torch.no_grad():
                    _export_one(model, io, path, opset, max_batch)
            except Exception as exc:  # noqa: BLE001 - the exporter's many error types, cause kept
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                fix = (f"try the default --opset {DEFAULT_OPSET}" if opset != DEFAULT_OPSET else
                       "rerun with --debug for the traceback (a bug in the model code or the exporter)")
                raise ExportError(f"{name}.{encoder}.onnx: torch.onnx.export failed at opset {opset} "
                                  f"({type(exc).__name__}: {first[:200]}); fix: {fix}") from exc
            sidecar = dict(common, encoder=encoder, io=io.to_dict())
            if fold:
                sidecar["folding"] = fold_file(path)
            sidecar["file_sha256"] = file_sha256(path)
            if io.static:
                sidecar["shapes"] = "static"
                sidecar["model"] = dict(common["model"], capacity=list(model.capacity[encoder]))
                if capacity_profiles and encoder in capacity_profiles:
                    sidecar["capacity_profile"] = capacity_profiles[encoder]
            else:
                sidecar["shapes"] = "dynamic"
            if validate:
                report = val.validate_against_eager(path, model, encoder, batch_sizes=batch_sizes, log=log)
                sidecar["validation"] = report
            path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
        for f in sorted(staging.iterdir()):
            os.replace(f, out_dir / f.name)
            written.append(out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def cached_export(model, cache: Path, label: str, encoders=("image",), *, source: str = "cache",
                  weights_hash: str | None = None, reuse=(), log=lambda *_: None) -> dict[str, Path]:
    """{encoder: ONNX path} for `model` as it is (weights, temperature, mode, capacities), reused
    from `cache`, then from the folders in `reuse`, when an artifact's sidecar there records the same
    and the same graph code (another label's, or one `madtp-deploy export` wrote); the others are
    exported into `cache` (fp32, not validated) under `<label>-<key>`. The bench and the calibration
    share it."""
    from ..files import read_json

    wh = weights_hash or weights_sha256(model)
    common = {"weights_sha256": wh, "temperature": model.temperature, "mode": model.mode,
              "graph_code_sha256": graph_code_sha256(model)}
    caps = getattr(model, "capacity", None) or {}
    want = {e: dict(common, capacity=list(caps[e]) if e in caps else None) for e in encoders}
    key = hashlib.sha256(repr((sorted(common.items()), sorted(caps.items()))).encode()).hexdigest()[:16]
    name = f"{label}-{key}"
    found = {}
    for e in encoders:
        candidates = [cache / f"{name}.{e}.onnx"] + sorted(cache.glob(f"*.{e}.onnx"))
        for path in candidates + [p for folder in reuse for p in sorted(Path(folder).glob(f"*.{e}.onnx"))]:
            side = path.with_suffix(".json")
            if path.is_file() and side.is_file():
                m = read_json(side, ExportError, "sidecar missing", f"delete the cache folder {cache}")["model"]
                if all(m.get(k) == v for k, v in want[e].items()):
                    found[e] = path
                    break
    missing = tuple(e for e in encoders if e not in found)
    if missing:
        log(f"exporting the {', '.join(missing)} encoder(s) of {source} (fp32, cached under {cache})")
        Path(cache).mkdir(parents=True, exist_ok=True)
        export_model(model, cache, name, source=source, validate=False, log=lambda *_: None, encoders=missing,
                     weights_hash=wh)
        found.update({e: cache / f"{name}.{e}.onnx" for e in missing})
    return found
