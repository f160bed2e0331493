"""One embedding job: the collection, the graph, decoding, and the local batched loop.

The Ray path (ray_data.py) runs the same `decode` and `Embedder` in Ray tasks and actors and hands
its rows to the same `Store`, so both write the same shards.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError, UsageError
from .store import Store

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
GRAPH_BACKENDS = {".onnx": "ort", ".pt2": "aoti", ".plan": "trt"}
DEFAULT_CACHE = Path("export/.embed")


# -- the collection ---------------------------------------------------------------------------------

def list_images(images: Path) -> list[str]:
    """A folder (its image files, recursively, sorted) or a text file (one path a line, relative to the
    file's folder; blank lines and # comments skipped), in a fixed order: the row order of the index."""
    images = Path(images)
    if images.is_dir():
        paths = sorted(str(p) for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        fix = f"pass a folder with {', '.join(IMAGE_SUFFIXES)} files or a list file"
    elif images.is_file():
        try:
            lines = images.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"--images {images}: unreadable list file ({exc}); fix: pass a folder or a UTF-8 "
                            f"text file of image paths") from exc
        paths = [str(images.parent / ln.strip()) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        fix = "write one image path a line"
    else:
        raise DataError(f"--images {images}: no such folder or list file; fix: pass a folder of images or a "
                        f"text file of image paths")
    if not paths:
        raise DataError(f"--images {images}: no images; fix: {fix}")
    return paths


def collection_sha256(paths: list[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def read_bytes(path: str) -> bytes | str:
    """The file's bytes, or why not (a string)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"


def decode(data: bytes | str, size: int) -> np.ndarray | str:
    """[3, size, size] float32 by the project's preprocessing, or why the image cannot be used."""
    if isinstance(data, str):
        return data
    from PIL import Image

    from ..data.retrieval import preprocess_array

    try:
        with Image.open(io.BytesIO(data)) as img:
            return preprocess_array(img, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's decoder errors
        why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the file", str(exc))  # no address: same on rerun
        return f"not a readable image ({type(exc).__name__}: {why[:120]})"


# -- the graph --------------------------------------------------------------------------------------

@dataclass
class Graph:
    """The image graph to run (and the text graph beside it, for text queries)."""
    path: Path
    backend: str
    sidecar: dict
    text: Path | None

    @property
    def spec(self):
        from ..families import spec_from_record

        return spec_from_record(self.sidecar)

    def describe(self) -> dict:
        from ..onnx.io import encoder_io

        outs = {t.name: t for t in encoder_io(self.spec, "image", static=self.sidecar.get("shapes") == "static").outputs}
        m = self.sidecar["model"]
        return {"graph": str(self.path), "graph_sha256": self.sidecar.get("file_sha256") or _sha(self.path),
                "backend": self.backend, "text_graph": str(self.text) if self.text else None,
                "family": self.sidecar.get("family"), "spec": self.spec.name, "mode": m.get("mode"),
                "temperature": m.get("temperature"), "max_batch": self.sidecar.get("max_batch"),
                "dim": outs["embeds"].axes[1], "layers": outs["kept"].axes[1]}


def _sha(path: Path) -> str:
    from ..files import file_sha256

    return file_sha256(path)


def _sidecar(path: Path) -> dict:
    from ..files import read_json

    return read_json(path.with_suffix(".json"), UsageError, "sidecar missing (it names the model and its IO)",
                     "keep the .json `madtp-deploy export` wrote beside the graph, or pass --model SOURCE")


def resolve_graph(model: str, backend: str | None = None, temperature: float | None = None,
                  cache: Path = DEFAULT_CACHE, log=print) -> Graph:
    """--model: an exported image graph (.onnx, .pt2, .plan with its sidecar) or anything `load` takes,
    exported here as a packed graph (cached: the same weights and temperature reuse it)."""
    path = Path(model)
    if path.suffix in GRAPH_BACKENDS and path.is_file():
        side = _sidecar(path)
        if side.get("encoder") != "image":
            raise UsageError(f"--model {path}: the {side.get('encoder')!r} graph; fix: pass the image graph "
                             f"(<name>.image{path.suffix})")
        text = path.with_name(path.name.replace(".image.", ".text.", 1))
        return Graph(path.resolve(), backend or GRAPH_BACKENDS[path.suffix], side,
                     text.resolve() if text != path and text.is_file() else None)
    if backend not in (None, "ort", "ort-cuda"):
        raise UsageError(f"--backend {backend}: runs a graph exported for it; fix: pass --model with the file "
                         f"(`madtp-deploy export --format aoti` writes a .pt2, `madtp-deploy build` a .plan)")
    from .. import families
    from ..api import load
    from ..onnx.export import cached_export

    m = load(model, mode="packed", temperature=temperature)
    fam = families.of(m)
    if "image" not in fam.encoders:
        raise UsageError(f"--model {model}: {fam.title} models have no image graph to embed with; fix: use a "
                         f"model with an image encoder ({', '.join(f.name for f in _with_image())})")
    encoders = tuple(e for e in ("image", "text") if e in fam.encoders)
    paths = cached_export(m, Path(cache), f"embed-{m.spec.name}", encoders, source=str(model), log=log)
    image = paths["image"].resolve()
    return Graph(image, backend or "ort", _sidecar(image), paths["text"].resolve() if "text" in paths else None)


def _with_image():
    from .. import families

    return [families.get(n) for n in families.names() if "image" in families.get(n).encoders]


def cpu_cores() -> int:
    """The cores this process may run on (its affinity: a container's or a Ray worker's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def open_graph(path: Path, backend: str, threads: int | None = None):
    from ..runtime import open_session

    kwargs: dict = {}
    if backend in ("ort", "ort-cuda"):
        kwargs["spinning"] = False  # idle pool threads would steal the decoding thread's core
        if threads:
            kwargs["threads"] = threads
    return open_session(path, backend, **kwargs)


class Embedder:
    """A session on the image graph: pixels [B, 3, S, S] -> (embeds, kept, per-image GFLOPs)."""

    def __init__(self, path: Path, backend: str, sidecar: dict, threads: int | None = None):
        from .. import families

        self.session = open_graph(path, backend, threads)
        self.spec = families.spec_from_record(sidecar)
        self.gflops = families.of(self.spec).hook("image_gflops")
        self.pruning = float(sidecar["model"].get("temperature") or 0) > 0

    def __call__(self, pixels: np.ndarray):
        import torch

        out = self.session.run({"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})
        kept = np.asarray(out["kept"], dtype=np.int64)
        g = self.gflops(self.spec, torch.from_numpy(kept), self.pruning)
        return out["embeds"], kept, g.double().numpy()


def embed_rows(embedder: Embedder, indices, paths, decoded) -> tuple[list[dict], list[dict]]:
    """One batch: rows of the images that decoded, error records of the others."""
    rows, errors, good = [], [], []
    for i, p, d in zip(indices, paths, decoded):
        if isinstance(d, str):
            errors.append({"index": int(i), "path": p, "error": d})
        else:
            good.append((int(i), p, d))
    if good:
        embeds, kept, gflops = embedder(np.stack([d for _, _, d in good]))
        rows = [{"index": i, "path": p, "embedding": e, "kept": k, "gflops": g}
                for (i, p, _), e, k, g in zip(good, embeds, kept, gflops)]
    return rows, errors


# -- the job ----------------------------------------------------------------------------------------

def plan(store: Store, batch_size: int) -> list[tuple[int, list[int]]]:
    """(shard, indices) of every batch still to run: batches never cross a shard, so a graph sees the
    same batches on every path (local, Ray) and gives bit-identical rows."""
    pending = [k for k in range(store.n_shards) if k not in store.done()]
    return [(k, list(r[j:j + batch_size])) for k in pending for r in [store.shard_range(k)]
            for j in range(0, len(r), batch_size)]


def run_local(store: Store, paths: list[str], graph: Graph, batch_size: int, progress: Callable[[int], None],
              workers: int | None = None):
    """The batched loop. onnxruntime on the CPU: one single-threaded session per core (`workers`), each
    reading, decoding and running whole batches, so no core waits for another inside an operator and
    decoding never steals a core from a running graph. Other backends (a GPU, AOTInductor): one session;
    a thread decodes the next batch while it runs this one. Shards are written in order either way."""
    size = graph.spec.image_size

    def load(idx):
        return [decode(read_bytes(paths[i]), size) for i in idx]

    if graph.backend == "ort":
        workers = workers or cpu_cores()
        mine = threading.local()

        def work(idx):
            if not hasattr(mine, "embedder"):
                mine.embedder = Embedder(graph.path, graph.backend, graph.sidecar, threads=1)
            return embed_rows(mine.embedder, idx, [paths[i] for i in idx], load(idx))

        def finish(idx, done):
            return done
    else:
        workers = 1
        embedder = Embedder(graph.path, graph.backend, graph.sidecar)
        work = load

        def finish(idx, decoded):
            return embed_rows(embedder, idx, [paths[i] for i in idx], decoded)

    batches = iter(plan(store, batch_size))
    acc: dict[int, tuple[list, list]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: deque = deque()

        def submit() -> None:
            nxt = next(batches, None)
            if nxt is not None:
                running.append((nxt, pool.submit(work, nxt[1])))

        for _ in range(2 * workers):  # every worker busy, and its next batch queued
            submit()
        while running:
            (k, idx), future = running.popleft()
            rows, errors = finish(idx, future.result())
            submit()
            r, e = acc.setdefault(k, ([], []))
            r += rows
            e += errors
            if idx[-1] == store.shard_range(k)[-1]:
                store.write_shard(k, *acc.pop(k))
            progress(len(idx))


def _write_tokenizer(graph: Graph, tokenizer: Path | None, output: Path) -> dict:
    """The model's own tokenizer copied into the index (what `search --text` reads), as serve does."""
    import shutil

    from .. import families
    from ..serve.repository import tokenizer_files
    from ..serve.table import tokenizer_kind

    spec = graph.spec
    shutil.rmtree(output / "tokenizer", ignore_errors=True)  # a killed run's partial copy
    return tokenizer_files(spec, tokenizer_kind(families.of(spec).name), tokenizer, output / "tokenizer")
