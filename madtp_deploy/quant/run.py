"""`madtp-deploy calibrate`: calibration set + manifest + Q/DQ ONNX + sidecar, per encoder.

Order of work: every input is checked (graph inputs, set contents, sizes, sample counts) before the
first file is written; then the exported graphs (cached), the sets and the quantized graphs are
written, each under a temp name and renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CalibrationError
from ..files import check_output_dir
from ..modes import SERVING_DEFAULT
from ..onnx.export import cached_export
from ..onnx.io import encoder_io
from . import calibset
from .quantize import QuantConfig, quantize_file

ENCODERS = ("image", "text")
SHAPES = ("dynamic", "static")
WORK = ".work"  # under the output folder: exports and generated scenes (gitignored)


@dataclass
class Job:
    encoder: str
    onnx: Path | None                 # None: exported from the model before quantizing
    inputs: list[dict]                # [{name, dtype, shape}]
    stem: str                         # e.g. madtp-clip-tiny.image


def _spec_inputs(model, encoder: str) -> list[dict]:
    return [{"name": t.name, "dtype": t.dtype, "shape": list(t.axes)} for t in encoder_io(model.spec, encoder).inputs]


def parse_encoders(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in ENCODERS]
    if bad or not names:
        raise CalibrationError(f"--encoders {text!r}: unknown {', '.join(bad) or '(none)'}; fix: image, text "
                               f"or image,text")
    return names


def _check_clip(spec, where: str) -> None:
    """Calibration (which nodes stay float, the keep-agreement targets) is built and measured for CLIP:
    a BLIP graph would quantize, but nothing here says how its keep decisions hold up."""
    from ..families import of

    family = of(spec)
    if not family.supports("calibrate"):  # the registry's feature table says which families have it
        raise CalibrationError(f"{where}: {spec.name} is a BLIP model ({family.title}); calibration is built and measured "
                               f"for CLIP graphs only; fix: calibrate a CLIP model (BLIP graphs serve in fp32)")


def graph_label(model_side: dict) -> str:
    """How a quantized file's name tells its graph apart: '' for the served (packed, dynamic) graph,
    else '-invariant', '-reference', '-static', '-invariant-static'."""
    mode = model_side.get("mode", SERVING_DEFAULT.value)
    return ("" if mode == SERVING_DEFAULT.value else f"-{mode}") + ("-static" if model_side.get("capacity") else "")


def calibrate(*, model: str = "shipped", onnx: Path | None = None, encoders=("image", "text"),
              mode: str = SERVING_DEFAULT.value, shapes: str = "dynamic", temperature: float | None = None,
              data: Path | None = None, split: str = "val", calib_set: Path | None = None, samples: int = 128,
              seed: int = 0, output: Path = Path("calibration"), name: str | None = None,
              cfg: QuantConfig | None = None, log=print) -> list[dict]:
    """Returns, per encoder, {"onnx", "sidecar", "calib_set", "manifest"} paths and the sidecar.

    The graph quantized is the one the project serves: packed by default (`mode`), its static-shape
    form with shapes="static" (capacities fitted as `export --shapes static` fits them)."""
    cfg = (cfg or QuantConfig()).check()
    if samples < 1:
        raise CalibrationError(f"--samples {samples}: must be >= 1; fix: e.g. --samples 128")
    if shapes not in SHAPES:
        raise CalibrationError(f"--shapes {shapes!r}: unknown; fix: dynamic or static")
    if shapes == "static" and onnx is not None:
        raise CalibrationError(f"--shapes static with --onnx {onnx}: a file's shapes are fixed at export; "
                               f"fix: pass a file from `madtp-deploy export --shapes static`, without --shapes")
    output = check_output_dir(output, "--output")
    if calib_set is not None and (onnx is None and len(encoders) != 1):
        raise CalibrationError("--calib-set: a set belongs to one encoder; fix: add --onnx FILE or --encoders image")

    # 1. what the graphs take
    m = None
    if onnx is not None:
        onnx = Path(onnx)
        if not onnx.is_file():
            raise CalibrationError(f"--onnx {onnx}: no such file; fix: run `madtp-deploy export` first")
        side = calibset.read_sidecar(onnx)
        inputs = calibset.check_graph_inputs(onnx, side)
        if side.get("quantization"):
            raise CalibrationError(f"--onnx {onnx}: already quantized; fix: pass the fp32 export")
        from ..specs import spec_from_dict

        spec = spec_from_dict(side["model"]["spec"])
        _check_clip(spec, f"--onnx {onnx}")
        jobs = [Job(side["encoder"], onnx, inputs, onnx.stem)]
        source = side["model"]["source"]
    else:
        from .. import load

        m = load(model, mode=mode, temperature=temperature)
        _check_clip(m.spec, f"--model {model}")
        if m.temperature <= 0:
            raise CalibrationError(f"--model {model}: temperature 0 (no pruning); fix: pass --temperature T "
                                   f"or a MADTP checkpoint")
        spec = m.spec
        jobs = [Job(e, None, _spec_inputs(m, e), f"{spec.name}.{e}") for e in encoders]
        source = str(model)
        if shapes == "static":
            _fit_capacities(m, encoders, data, source, log)

    # 2. the calibration data, checked against those inputs (nothing written yet)
    work = output / WORK
    sets = {}
    for job in jobs:
        where = str(calib_set) if calib_set else f"--data {data or 'generated scenes'}"
        if calib_set is not None:
            arrays = calibset.load_set(Path(calib_set))
            sources = {"set": calibset.display_path(Path(calib_set)), "set_sha256": calibset.sha256_file(Path(calib_set))}
        else:
            root = data
            if root is None:
                pool = calibset.SCENES[f"n_{split}"] if f"n_{split}" in calibset.SCENES else 0
                unit = encoder_io(spec, job.encoder).unit
                pool = pool * (2 if unit == "captions" and split != "train" else 1)  # 2 captions per val/test image
                if pool < samples:
                    raise CalibrationError(f"generated scenes, split {split}: {pool} {unit}, fewer than "
                                           f"--samples {samples}; fix: pass --samples {pool} or --data DIR")
                root = calibset.ensure_scenes(work / "scenes", log)
            arrays, sources = calibset.build_set(job.encoder, spec, Path(root), split, samples, seed)
        sets[job.encoder] = (calibset.check_set(arrays, job.inputs, samples, where), sources)

    # 3. the fp32 graphs
    if any(j.onnx is None for j in jobs):
        assert m is not None  # no --onnx: the model was loaded above
        paths = cached_export(m, work, m.spec.name, tuple(j.encoder for j in jobs), source=source, log=log)
        for j in jobs:
            j.onnx = paths[j.encoder]
            calibset.check_graph_inputs(j.onnx, calibset.read_sidecar(j.onnx))

    # 4. write: set + manifest, Q/DQ graph + sidecar
    results = []
    for job in jobs:
        assert job.onnx is not None  # every job has its fp32 graph by now (step 3)
        arrays, sources = sets[job.encoder]
        side = calibset.read_sidecar(job.onnx)
        suffix = name or (cfg.precision + ("-pp" if cfg.quantize_pruning_path else "")
                          + ("-modelopt" if cfg.quantizer == "modelopt" and cfg.precision == "int8" else "")
                          + graph_label(side["model"]))
        if calib_set is not None:
            npz, manifest = Path(calib_set), {"file": str(calib_set), "sha256": calibset.sha256_file(Path(calib_set))}
        else:
            npz = output / f"{job.stem}.calib.npz"
            manifest = calibset.write_set(arrays, npz, {
                "encoder": job.encoder, "samples": samples, "sources": sources,
                "model": {k: side["model"].get(k) for k in ("source", "temperature", "mode", "weights_sha256")}
                | {"spec": spec.name}})
        calibration = {"set": calibset.display_path(npz), "set_sha256": manifest["sha256"],
                       "manifest": calibset.display_path(npz.with_suffix(".json")) if calib_set is None else None,
                       "sources": sources if calib_set is not None else "see manifest", "samples": samples}
        out = output / f"{job.stem}.{suffix}.onnx"
        sidecar = quantize_file(job.onnx, arrays, out, cfg, calibration, log)
        results.append({"onnx": out, "sidecar": out.with_suffix(".json"), "calib_set": npz,
                        "fp32_onnx": job.onnx, "info": sidecar})
    return results



def _fit_capacities(m, encoders, data: Path | None, source: str, log) -> None:
    """The static-shape graph: the capacities `export --shapes static` fits (its default quantile and
    sample count; the calibration data when given, else its own generated scenes)."""
    from ..capacity import DEFAULT_QUANTILE, apply, fit_profiles
    from ..onnx.export import weights_sha256

    profiles = fit_profiles(m, tuple(encoders), DEFAULT_QUANTILE, Path(data) if data else None, 256, source,
                            weights_sha256(m))
    apply(m, profiles)
    log("static shapes: capacities " + ", ".join(f"{e} {p.capacity}" for e, p in profiles.items()))


def cached_int8(fp32: Path, arrays: dict, where: str, cache: Path, cfg: QuantConfig | None = None,
                log=print) -> Path:
    """The INT8 graph of an fp32 export (default recipe unless `cfg`), calibrated on `arrays` (named
    as the graph's inputs; `where` says where they come from), or reused from `cache` when a file
    there was quantized from the same fp32 file with the same recipe and the same calibration data."""
    import hashlib
    import json
    from dataclasses import asdict

    cfg = (cfg or QuantConfig()).check()
    fp32 = Path(fp32)
    n = len(next(iter(arrays.values())))
    arrays = calibset.check_set(arrays, calibset.check_graph_inputs(fp32, calibset.read_sidecar(fp32)), n, where)
    src_sha = calibset.sha256_file(fp32)
    set_sha = calibset.arrays_sha256(arrays)
    from .quantize import code_sha256

    key = hashlib.sha256(json.dumps([src_sha, set_sha, asdict(cfg), code_sha256()], sort_keys=True,
                                    default=str).encode())
    out = Path(cache) / f"{fp32.stem}.{cfg.precision}-{key.hexdigest()[:12]}.onnx"
    if out.is_file() and out.with_suffix(".json").is_file():
        side = calibset.read_sidecar(out)
        if side.get("file_sha256") == calibset.sha256_file(out) and side["source_onnx"]["sha256"] == src_sha:
            return out
    calibration = {"set": where, "arrays_sha256": set_sha, "samples": n}
    quantize_file(fp32, arrays, out, cfg, calibration, log)
    return out
