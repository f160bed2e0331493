"""BLIP NLVR2 to ONNX: the IO contract, the export wrapper, export and validation against eager.

One graph: two images + a statement -> logits and the kept token counts, with DTP inside the graph
(data-dependent sizes become run-time values, as for CLIP; onnx/export.py). Exported with
`torch.onnx.export(..., dynamo=True, optimize=False)`: onnxscript's optimizer miscompiles the
data-dependent slices (docs/NOTES.md).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ExportError, ValidationError
from ..files import atomic


@dataclass(frozen=True)
class Tensor:
    name: str
    axes: tuple            # ints or dynamic axis names
    dtype: str


@dataclass(frozen=True)
class NlvrIO:
    """Inputs, outputs, dynamic axes and tolerance of the NLVR2 graph."""
    image_size: int
    vision_layers: int
    text_layers: int
    max_text: int
    atol: float = 1e-4
    inputs: tuple = field(init=False)
    outputs: tuple = field(init=False)

    def __post_init__(self):
        s = self.image_size
        object.__setattr__(self, "inputs", (
            Tensor("images0", ("batch", 3, s, s), "float32"), Tensor("images1", ("batch", 3, s, s), "float32"),
            Tensor("input_ids", ("batch", "seq"), "int64"), Tensor("attention_mask", ("batch", "seq"), "int64")))
        object.__setattr__(self, "outputs", (
            Tensor("logits", ("batch", 2), "float32"), Tensor("kept_image", ("batch", 2, self.vision_layers), "int64"),
            Tensor("kept_text", ("batch", self.text_layers), "int64")))

    def to_dict(self) -> dict:
        return asdict(self)

    def example(self, batch: int, seed: int = 0, enc_id: int = 1, vocab: int = 32) -> dict:
        """Inputs that prune differently: image contrast and statement lengths vary per instance."""
        g = torch.Generator().manual_seed(seed)
        scale = torch.linspace(0.2, 3.0, 2 * batch)[torch.randperm(2 * batch, generator=g)][:, None, None, None]
        px = torch.randn(2 * batch, 3, self.image_size, self.image_size, generator=g) * scale
        n = min(self.max_text, 12)
        ids = torch.randint(5, vocab, (batch, n), generator=g)
        ids[:, 0] = enc_id
        lengths = torch.randint(3, n + 1, (batch,), generator=g)
        lengths[0] = n
        mask = (torch.arange(n)[None, :] < lengths[:, None]).long()
        return {"images0": px[:batch], "images1": px[batch:], "input_ids": ids * mask, "attention_mask": mask}


def nlvr_io(model) -> NlvrIO:
    s = model.spec
    return NlvrIO(s.image_size, s.vision_layers, s.text_layers, s.max_positions)


class NlvrWrapper(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images0, images1, input_ids, attention_mask):
        o = self.model.nlvr(images0, images1, input_ids, attention_mask)
        return o.logits, o.kept_image, o.kept_text


def export_nlvr(model, path: Path, opset: int = 20, max_batch: int = 64) -> NlvrIO:
    """Write the NLVR2 graph to `path` (atomically). Dynamic batch and statement length."""
    io = nlvr_io(model)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    seq = torch.export.Dim("seq", min=3, max=io.max_text)  # min 3: torch.export's guard (docs/NOTES.md)
    dyn = {"images0": {0: batch}, "images1": {0: batch}, "input_ids": {0: batch, 1: seq},
           "attention_mask": {0: batch, 1: seq}}
    args = tuple(io.example(2, enc_id=model.spec.enc_id, vocab=model.spec.vocab_size).values())
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    path = Path(path)
    try:
        with torch.no_grad(), warnings.catch_warnings(), atomic(path) as tmp:
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(NlvrWrapper(model.eval()).eval(), args, dynamic_shapes=dyn,
                                     input_names=[t.name for t in io.inputs], output_names=[t.name for t in io.outputs],
                                     opset_version=opset, dynamo=True, verbose=False, optimize=False)
            prog.save(str(tmp), external_data=False)
    except Exception as exc:  # noqa: BLE001 - the exporter's many error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path}: NLVR2 export failed at opset {opset} ({first[:200]}); fix: try opset 20") from None
    return io


def validate_nlvr(path: Path, model, batch_sizes=(1, 8), seed: int = 0) -> dict:
    """onnxruntime against eager on inputs that prune differently. Kept counts must be equal (fatal
    otherwise, as are shape mismatches); logits within io.atol (reported; `passed` False beyond)."""
    import onnxruntime as ort

    io = nlvr_io(model)
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # CastLike constant-folding notices
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    report = {"atol": io.atol, "batches": [], "passed": True}
    for b in batch_sizes:
        x = io.example(b, seed=seed + b, enc_id=model.spec.enc_id, vocab=model.spec.vocab_size)
        with torch.no_grad():
            want = NlvrWrapper(model)(*x.values())
        got = sess.run(None, {k: v.numpy() for k, v in x.items()})
        for t, w, g in zip(io.outputs, want, got):
            if tuple(g.shape) != tuple(w.shape):
                raise ValidationError(f"{path}: output {t.name} has shape {tuple(g.shape)}, eager {tuple(w.shape)} "
                                      f"at batch {b}; fix: re-export")
        if not (np.array_equal(got[1], want[1].numpy()) and np.array_equal(got[2], want[2].numpy())):
            raise ValidationError(f"{path}: kept counts differ from eager at batch {b}; fix: re-export "
                                  f"(export with optimize=False)")
        diff = float(np.abs(got[0] - want[0].numpy()).max())
        ok = diff <= io.atol
        report["passed"] &= ok
        report["batches"].append({"batch": b, "max_abs_diff_logits": diff, "kept_equal": True, "passed": ok,
                                  "distinct_kept_image": len({tuple(r) for r in want[1].reshape(b, -1).tolist()}),
                                  "distinct_kept_text": len({tuple(r) for r in want[2].tolist()})})
    return report


def export_nlvr_artifact(model, out_dir: Path, name: str, *, source: str, opset: int = 20, max_batch: int = 64,
                         validate: bool = True, log=print) -> list[Path]:
    """`madtp-deploy export` for a BLIP NLVR2 model: <name>.nlvr.onnx and its JSON sidecar."""
    import json

    from ..files import write_text_atomic
    from .export import check_output_dir, file_sha256, versions

    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    path = out_dir / f"{name}.nlvr.onnx"
    log(f"exporting the NLVR2 model -> {path}")
    io = export_nlvr(model, path, opset, max_batch)
    sidecar = {"model": {"source": source, "spec": model.spec.to_dict(), "temperature": model.temperature,
                         "mode": model.mode},
               "encoder": "nlvr", "opset": opset, "max_batch": max_batch, "versions": versions(),
               "io": {"inputs": [t.name for t in io.inputs], "outputs": [t.name for t in io.outputs], "atol": io.atol},
               "file_sha256": file_sha256(path)}
    try:
        if validate:
            sidecar["validation"] = report = validate_nlvr(path, model)
            worst = max(b["max_abs_diff_logits"] for b in report["batches"])
            log(f"  validated {path.name}: logits max |diff| {worst:.2e} (atol {io.atol:g}), kept equal"
                + ("" if report["passed"] else " -- WARNING: tolerance missed, the artifact is kept"))
        write_text_atomic(path.with_suffix(".json"), json.dumps(sidecar, indent=2))
    except BaseException:
        path.unlink(missing_ok=True)  # no graph without its sidecar
        raise
    return [path, path.with_suffix(".json")]
