"""`embed_collection`: the whole job, on the local batched loop (job.py) or on Ray Data (ray_data.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import UsageError
from ..files import write_text_atomic
from .job import (DEFAULT_CACHE, _write_tokenizer, collection_sha256, list_images, resolve_graph,
                  run_local)
from .store import MANIFEST, Store


def embed_collection(model: str, images: Path, output: Path, *, batch_size: int = 32, shard_size: int = 1024,
                     backend: str | None = None, temperature: float | None = None, cache: Path = DEFAULT_CACHE,
                     tokenizer: Path | None = None, ray: str | None = None, ray_actors: int = 2,
                     ray_cpus: float = 0.5, ray_gpus: float = 0.0, progress=None, log=print) -> dict:
    """Embed every image of `images` into Parquet shards under `output`; resume an interrupted run.

    progress: None, or a callable (total, already_done) -> advance(n) (the CLI's progress bar).
    Returns a summary: rows, errors, shards written this run, seconds, images/s of this run.
    """
    from ..files import check_output_dir

    output = check_output_dir(output, "--output")
    paths = list_images(images)
    graph = resolve_graph(model, backend, temperature, cache, log)
    info = graph.describe()
    if info["max_batch"] and batch_size > info["max_batch"]:
        raise UsageError(f"--batch-size {batch_size}: {graph.path} takes batches up to {info['max_batch']}; "
                         f"fix: pass --batch-size {info['max_batch']} or less")
    manifest = {"format": 1, "model": str(model), "images": str(images), "count": len(paths),
                "collection_sha256": collection_sha256(paths), "shard_size": shard_size, **info,
                "columns": ["path", "embedding", "kept", "gflops"]}
    store = Store.open(output, manifest)
    if graph.text is not None and "tokenizer" not in store.manifest:
        store.manifest["tokenizer"] = _write_tokenizer(graph, tokenizer, output)
        write_text_atomic(output / MANIFEST, json.dumps(store.manifest, indent=2))
    done = store.done()
    todo = sum(len(store.shard_range(k)) for k in range(store.n_shards) if k not in done)
    advance = progress(len(paths), len(paths) - todo) if progress else (lambda n: None)
    log(f"embedding {todo} of {len(paths)} images ({len(done)} of {store.n_shards} shards done) with "
        f"{graph.path.name} ({graph.backend}{', Ray ' + ray if ray else ''}) -> {output}")
    t0 = time.perf_counter()
    if todo:
        if ray:
            from .ray_data import run_ray

            run_ray(store, paths, graph, batch_size, advance, address=ray, actors=ray_actors, cpus=ray_cpus,
                    gpus=ray_gpus)
        else:
            run_local(store, paths, graph, batch_size, advance)
    seconds = time.perf_counter() - t0
    errors = store.errors()
    return {"output": str(output), "images": len(paths), "rows": len(paths) - len(errors), "errors": len(errors),
            "embedded_now": todo, "shards": store.n_shards, "shards_resumed": len(done), "seconds": seconds,
            "images_per_s": todo / seconds if todo and seconds > 0 else None}
