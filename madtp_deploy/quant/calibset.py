"""Calibration sets: npz files keyed by a graph's input names, built from a dataset split, with a
manifest of the sources and their sha256 hashes. Every check runs before anything is written."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CalibrationError, DataError
from ..files import atomic, read_json
from ..onnx.io import encoder_io

SCHEMA = "madtp-deploy/calibration-set/1"
# The generated scenes exactly as `madtp-deploy make-data` writes them by default (the shipped
# model's data): the val and test splits depend on the train split through one seeded generator.
SCENES = {"n_train": 4000, "n_val": 300, "n_test": 500, "seed": 0}


def sha256_file(path: Path) -> str:
    from ..onnx.export import file_sha256

    return file_sha256(path)


def display_path(path: Path) -> str:
    """Repository-relative where possible (manifests are committed; no machine paths in them)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- what the graph expects --------------------------------------------------------------------

def graph_inputs(onnx_path: Path) -> list[dict]:
    """[{name, dtype, shape}] of an ONNX file's inputs; shape entries are ints or axis names."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors
        raise CalibrationError(f"{onnx_path}: not a readable ONNX file ({type(exc).__name__}); "
                               f"fix: pass a file written by `madtp-deploy export`") from exc
    out = []
    for i in model.graph.input:
        t = i.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        out.append({"name": i.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                    "shape": dims})
    return out


def check_graph_inputs(onnx_path: Path, sidecar: dict) -> list[dict]:
    """The graph's inputs must be the ones its sidecar's IO contract names, in that order."""
    found = graph_inputs(onnx_path)
    expected = [t["name"] for t in sidecar.get("io", {}).get("inputs", [])]
    names = [t["name"] for t in found]
    if not expected:
        raise CalibrationError(f"{Path(onnx_path).with_suffix('.json')}: no 'io.inputs' field; "
                               f"fix: re-export with `madtp-deploy export`")
    if names != expected:
        raise CalibrationError(f"{onnx_path}: graph inputs {', '.join(names) or 'none'}, expected "
                               f"{', '.join(expected)} ({sidecar.get('encoder', '?')} encoder); fix: pass the "
                               f"encoder file `madtp-deploy export` wrote, unmodified")
    return found


def read_sidecar(onnx_path: Path) -> dict:
    return read_json(Path(onnx_path).with_suffix(".json"), CalibrationError, "sidecar missing",
                     "export with `madtp-deploy export`, which writes it beside the .onnx")


# -- sets ----------------------------------------------------------------------------------------

def load_set(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise CalibrationError(f"{path}: calibration set not found; fix: build one with `madtp-deploy "
                               f"calibrate` (without --calib-set)") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CalibrationError(f"{path}: unreadable calibration set ({type(exc).__name__}); fix: rebuild "
                               f"it with `madtp-deploy calibrate` (without --calib-set)") from exc
    if not arrays:
        raise CalibrationError(f"{path}: empty calibration set (no arrays); fix: rebuild it")
    return arrays


def check_set(arrays: dict[str, np.ndarray], inputs: list[dict], samples: int, where: str) -> dict[str, np.ndarray]:
    """Keys = the graph's input names, sizes that fit, >= `samples` rows; returns the first `samples`."""
    names = [t["name"] for t in inputs]
    if sorted(arrays) != sorted(names):
        raise CalibrationError(f"{where}: arrays {', '.join(sorted(arrays))}, but the graph's inputs are "
                               f"{', '.join(names)}; fix: build the set for this encoder")
    counts = {k: len(v) if v.ndim else 0 for k, v in arrays.items()}
    n = min(counts.values())
    if n == 0:
        raise CalibrationError(f"{where}: empty calibration set (0 samples); fix: rebuild it from a dataset "
                               f"with images")
    if len(set(counts.values())) > 1:
        raise CalibrationError(f"{where}: arrays have different sample counts {counts}; fix: rebuild it")
    if n < samples:
        raise CalibrationError(f"{where}: {n} samples, fewer than --samples {samples}; fix: pass "
                               f"--samples {n} or a larger set")
    for t in inputs:
        a = arrays[t["name"]]
        if a.ndim != len(t["shape"]):
            raise CalibrationError(f"{where}: '{t['name']}' has shape {list(a.shape)}, the graph takes "
                                   f"{t['shape']}; fix: build the set for this model")
        fixed = [(i, d) for i, d in enumerate(t["shape"]) if isinstance(d, int) and d > 0 and i > 0]
        if any(a.shape[i] != d for i, d in fixed):
            what = "images of size" if t["name"] == "pixels" else "shape"
            raise CalibrationError(f"{where}: '{t['name']}' {what} {list(a.shape[1:])}, the model takes "
                                   f"{[t['shape'][i] if isinstance(t['shape'][i], int) else '?' for i in range(1, a.ndim)]}; "
                                   f"fix: rebuild the set with --data (images are resized to the model's size)")
        if not np.can_cast(a.dtype, np.dtype(t["dtype"]), casting="same_kind"):
            raise CalibrationError(f"{where}: '{t['name']}' is {a.dtype}, the graph takes {t['dtype']}; "
                                   f"fix: build the set for this encoder")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CalibrationError(f"{where}: '{t['name']}' has NaN or inf values; fix: rebuild it")
    return {t["name"]: np.ascontiguousarray(arrays[t["name"]][:samples]).astype(t["dtype"]) for t in inputs}


def ensure_scenes(root: Path, log=print) -> Path:
    """The default data: the generated scenes (make-data defaults), made once under `root`."""
    from ..data import scenes

    root = Path(root)
    stamp = root / "generated.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == SCENES:
        return root
    log(f"generating the scenes dataset under {root} ({SCENES})")
    scenes.generate(root, **SCENES)
    stamp.write_text(json.dumps(SCENES))
    return root


def build_set(encoder: str, spec, data: Path, split: str, samples: int, seed: int = 0):
    """(arrays, sources): `samples` images or captions of a split, picked with a seeded draw."""
    from ..data import dataset

    s = dataset.load(Path(data), split)
    io = encoder_io(spec, encoder)
    pool = io.pool(s)
    if pool == 0:
        raise CalibrationError(f"{s.annotation}: no {io.unit}; fix: pass --data with a non-empty {split} split")
    if pool < samples:
        raise CalibrationError(f"{s.annotation}: {pool} {io.unit}, fewer than --samples {samples}; "
                               f"fix: pass --samples {pool} or more data")
    idx = sorted(np.random.default_rng(seed).choice(pool, samples, replace=False).tolist())
    files = [{"file": display_path(s.annotation), "sha256": sha256_file(s.annotation)}]
    try:
        tensors = io.from_dataset(spec, s, Path(data), idx)
    except DataError as exc:
        raise CalibrationError(str(exc)) from exc
    arrays = {t.name: tensors[t.name].numpy().astype(t.dtype) for t in io.inputs}
    if io.unit == "images":  # the sources a set was made from: each image, or the captions' vocabulary
        files += [{"file": display_path(s.images[i]), "sha256": sha256_file(s.images[i])} for i in idx]
    elif (Path(data) / "vocab.json").is_file():
        files.append({"file": display_path(Path(data) / "vocab.json"), "sha256": sha256_file(Path(data) / "vocab.json")})
    sources = {"dataset": display_path(Path(data)), "split": split, "seed": seed, "indices": idx, "files": files}
    return arrays, sources


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """A hash of the contents (names, dtypes, shapes, values): stable across rewrites, unlike the
    npz's own bytes, which carry zip timestamps."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_set(arrays: dict[str, np.ndarray], npz: Path, manifest: dict) -> dict:
    """npz and its manifest (<stem>.json beside it), each written under a temp name and renamed."""
    npz = Path(npz)
    with atomic(npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    manifest = dict(manifest, schema=SCHEMA, file=npz.name, sha256=sha256_file(npz), arrays_sha256=arrays_sha256(arrays),
                    inputs={k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()})
    text = json.dumps(manifest, indent=1)
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]",  # number lists on one line
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with atomic(npz.with_suffix(".json")) as tmp:
        tmp.write_text(text)
    return manifest
