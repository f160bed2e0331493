"""onnxruntime against eager PyTorch, on inputs chosen so that keep counts differ between them.

A different pruning decision (a keep count or overflow flag unlike eager's) or an output shape is a
wrong model: WrongModelError (export writes nothing; validate exits 1). A float drift beyond the
tolerance alone is a loud warning with the artifact kept (optimum's policy), and the report says which
tolerance would have passed. Quantized graphs (precision other than fp32) report keep agreement rather
than fail on it: calibration measures it (madtp_deploy.quant).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ValidationError, WrongModelError
from ..files import read_json
from typing import Any
from . import io as onnx_io


def _decisions(io: onnx_io.EncoderIO, out: dict) -> np.ndarray:
    """[B, ...] every exact output (keep counts, overflow flags) of each instance, side by side."""
    return np.concatenate([out[n].reshape(len(out[n]), -1).astype(np.int64) for n in io.exact_names], 1)


def _pick_varied(model: Any, io: onnx_io.EncoderIO, pool: int = 48):
    """A pool of inputs and the indices of three whose eager keep counts differ."""
    inputs = io.example(model.spec, pool, seed=11)
    kept = np.concatenate([_decisions(io, io.eager(model, {k: v[i:i + 1] for k, v in inputs.items()}))
                           for i in range(pool)])
    seen, chosen = set(), []
    for i in range(pool):
        key = tuple(kept[i].tolist())
        if key not in seen:
            seen.add(key)
            chosen.append(i)
    rest = [i for i in range(pool) if i not in chosen]
    return inputs, chosen[:3], chosen + rest


def _against_invariant(model: Any, io: onnx_io.EncoderIO, batch: dict, got: dict, atol: float) -> dict:
    saved, model.capacity = model.capacity, None
    try:
        exact = onnx_io.encoder_io(model, io.encoder).eager(model, batch)
    finally:
        model.capacity = saved
    fits = ~got["overflow"].any(1)
    diff = float(np.abs(got["embeds"][fits] - exact["embeds"][fits]).max()) if fits.any() else 0.0
    kept_equal = bool(np.array_equal(got["kept"][fits], exact["kept"][fits]))
    return {"overflowed_instances": int((~fits).sum()), "invariant_max_abs_diff": diff,
            "fits_equal_invariant": bool(diff <= atol and kept_equal)}


def validate_against_eager(onnx_path: Path, model: Any, encoder: str, *, batch_sizes=(1, 8, 32),
                           precision: str = "fp32", atol: float | None = None, log=print) -> dict:
    from ..runtime import open_session

    atol = onnx_io.DEFAULT_ATOL[precision] if atol is None else atol
    from ..runtime.base import Contract

    io = onnx_io.encoder_io(model, encoder)
    session = open_session(onnx_path, backend="ort", contract=Contract.of(io, model.spec, where=str(onnx_path)))
    inputs, varied, order = _pick_varied(model, io)
    cases = [("single", [i]) for i in varied]
    for b in batch_sizes:
        idx = [order[j % len(order)] for j in range(b)]
        cases.append((f"batch{b}", idx))
    report: dict[str, Any] = {"atol": atol, "precision": precision, "varied_inputs_kept": [], "cases": [], "passed": True}
    for label, idx in cases:
        batch = {k: v[idx].numpy() for k, v in inputs.items()}
        want = io.eager(model, batch)
        got = session.run(batch)
        for out in io.output_names:
            if got[out].shape != want[out].shape:
                raise WrongModelError(f"{onnx_path}: output '{out}' has shape {got[out].shape}, eager "
                                      f"{want[out].shape} ({label}); fix: re-export")
        diff = np.concatenate([np.abs(got[n] - want[n]).reshape(-1) for n in io.float_names])
        rel = diff / (np.concatenate([np.abs(want[n]).reshape(-1) for n in io.float_names]) + 1e-12)
        mismatched = (_decisions(io, got) != _decisions(io, want)).any(1)
        kept_equal = not bool(mismatched.any())
        case = {"case": label, "batch": len(idx), "max_abs_diff": float(diff.max()),
                "max_rel_diff": float(rel.max()), "kept_equal": kept_equal,
                "kept_mismatched_instances": int(mismatched.sum()),
                "passed": bool(diff.max() <= atol and kept_equal)}
        if io.static:  # where an instance fits its capacities it must get its exact invariant answer
            case |= _against_invariant(model, io, batch, got, atol)
            case["passed"] = case["passed"] and case["fits_equal_invariant"]
        if label == "single":
            kept = [want[n][0].reshape(-1) for n in io.exact_names if n.startswith("kept")]  # image, text
            report["varied_inputs_kept"].append(np.concatenate(kept).tolist())
        report["cases"].append(case)
        if not case["passed"]:
            report["passed"] = False
    worst = max(c["max_abs_diff"] for c in report["cases"])
    report["max_abs_diff"] = worst
    report["atol_that_would_pass"] = float(worst)
    wrong = [c for c in report["cases"] if not c["kept_equal"] or not c.get("fits_equal_invariant", True)]
    if wrong and precision == "fp32":
        c = wrong[0]
        raise WrongModelError(f"{onnx_path}: keep decisions differ from eager PyTorch in case {c['case']} "
                              f"({c['kept_mismatched_instances']} of {c['batch']} instances; field "
                              f"{'/'.join(io.exact_names)}): the graph prunes differently, a wrong model; fix: "
                              f"rerun with --debug and report it (nothing was written)")
    if report["passed"]:
        log(f"  validated {onnx_path.name}: max |diff| {worst:.2e} <= atol {atol:g}, kept equal "
            f"({len(cases)} cases, keep counts {report['varied_inputs_kept']})")
    else:
        bad = [c["case"] for c in report["cases"] if not c["passed"]]
        log(f"  WARNING: {onnx_path.name} FAILED validation in {', '.join(bad)}: max |diff| {worst:.2e} vs "
            f"atol {atol:g} (atol {worst:.2e} would have passed); kept equal: "
            f"{all(c['kept_equal'] for c in report['cases'])}. The artifact is kept (a float drift only).")
    return report


def validate_file(onnx_path: Path, log=print) -> dict:
    """`madtp-deploy validate FILE`: reload the eager model named in the sidecar and compare again."""
    from ..api import load
    from ..errors import ValidationError as VE

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise VE(f"{onnx_path}: no such ONNX file; fix: run `madtp-deploy export` first")
    sidecar_path = onnx_path.with_suffix(".json")
    sidecar = read_json(sidecar_path, VE, "sidecar missing", "re-export with `madtp-deploy export`, which writes it")
    try:
        m, enc = sidecar["model"], sidecar["encoder"]
        source, mode, temperature = m["source"], m["mode"], m["temperature"]
    except (KeyError, TypeError) as exc:
        raise VE(f"{sidecar_path}: field {exc} missing; fix: re-export") from exc
    check_sidecar_matches(onnx_path, sidecar_path, sidecar)
    beside = sidecar_path.parent / str(source)  # older sidecars: a path relative to the export's cwd
    if not Path(source).exists() and beside.exists():
        source = str(beside)
    model = load(source, mode=mode, temperature=temperature)
    if m.get("capacity") is not None:  # a static-shape graph: the same fixed slots in eager
        model.capacity = {enc: tuple(m["capacity"])}
    precision = sidecar.get("precision", "fp32")  # quantized graphs get their own tolerance
    if precision not in onnx_io.DEFAULT_ATOL:
        precision = "int8"
    return validate_against_eager(onnx_path, model, enc, precision=precision, log=log)


def check_sidecar_matches(onnx_path: Path, sidecar_path: Path, sidecar: dict) -> None:
    """The .onnx is the file its sidecar describes (the same bytes, the same inputs), else a
    ValidationError: another model's, another encoder's or an unrelated graph is not compared."""
    from ..families import of, spec_from_record
    from ..files import file_sha256

    fix = "keep each .onnx with the .json written beside it, or re-export"
    want = sidecar.get("file_sha256")
    if want is not None and file_sha256(onnx_path) != want:
        raise ValidationError(f"{onnx_path}: its bytes differ from those recorded in {sidecar_path.name} "
                              f"(field 'file_sha256'); fix: {fix}")
    try:
        encoders = of(spec_from_record(sidecar)).encoders
    except (KeyError, TypeError):  # older sidecars without a spec: any registered family's graph
        from .. import families

        encoders = tuple(dict.fromkeys(e for n in families.names() for e in families.get(n).encoders))
    if sidecar.get("encoder") not in encoders:
        raise ValidationError(f"{sidecar_path}: field 'encoder' is {sidecar.get('encoder')!r}, expected "
                              f"{' or '.join(map(repr, encoders))}; fix: {fix}")
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors (DecodeError has no public base here)
        raise ValidationError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__}); fix: re-export") from exc
    names = [i.name for i in graph.input]
    want_names = [t["name"] for t in sidecar.get("io", {}).get("inputs", [])]
    if not want_names:  # older sidecars: the encoder's IO contract names them
        try:
            spec = spec_from_record(sidecar)
        except (KeyError, TypeError):  # no spec either: names do not depend on the geometry, any spec will do
            from ..specs import get_spec, spec_names

            spec = next(get_spec(n) for n in spec_names() if sidecar["encoder"] in of(get_spec(n)).encoders)
        want_names = onnx_io.encoder_io(spec, sidecar["encoder"]).input_names
    if names != want_names:
        raise ValidationError(f"{onnx_path}: graph inputs {names} differ from the {sidecar['encoder']} encoder's "
                              f"{want_names} in {sidecar_path.name}; fix: {fix}")
