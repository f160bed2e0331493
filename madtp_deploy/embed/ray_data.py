"""The embedding job as a Ray Data pipeline: file reads and decoding in Ray tasks, the graph in a pool of
actors with fractional CPUs (or GPUs), the rows streamed back to this process's `Store` (the same
shards, the same resume as the local loop).

The graph and its sidecar travel in Ray's object store (the nodes need not share the export folder);
the images are read by the workers, so their paths must be readable on every node (shared storage),
and madtp-deploy must be installed in the nodes' Python.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RuntimeBackendError, UsageError
from .job import Embedder, Graph, decode, embed_rows, plan, read_bytes
from .store import Store


def _read(row: dict) -> dict:
    """A read task: the bytes of one batch's files (or why not)."""
    data = [read_bytes(str(p)) for p in row["path"]]
    return {"shard": row["shard"], "index": row["index"], "path": row["path"],
            "data": [d if isinstance(d, bytes) else b"" for d in data],
            "error": [d if isinstance(d, str) else "" for d in data]}


def _decode(row: dict, size: int) -> dict:
    """A decode task: one batch's pixels [n, 3, S, S] (zeros where the image failed) and errors."""
    n = len(row["index"])
    pixels = np.zeros((n, 3, size, size), dtype=np.float32)
    errors = [str(e) for e in row["error"]]
    for j in range(n):
        if not errors[j]:
            d = decode(bytes(row["data"][j]), size)
            if isinstance(d, str):
                errors[j] = d
            else:
                pixels[j] = d
    return {"shard": row["shard"], "index": row["index"], "path": row["path"], "pixels": pixels, "error": errors}


class _GraphActor:
    """One graph session per actor, opened from the bytes in the object store."""

    def __init__(self, blob, backend: str):
        import tempfile

        import ray

        if isinstance(blob, ray.ObjectRef):
            blob = ray.get(blob)
        folder = Path(tempfile.mkdtemp(prefix="madtp-embed-"))
        path = folder / blob["name"]
        path.write_bytes(blob["graph"])
        path.with_suffix(".json").write_text(blob["sidecar"])
        self.embedder = Embedder(path, backend, json.loads(blob["sidecar"]))

    def __call__(self, row: dict) -> dict:
        """One planned batch through the graph: the same batch the local loop runs (embed_rows)."""
        rows, errors = embed_rows(self.embedder, [int(i) for i in row["index"]], [str(p) for p in row["path"]],
                                  [e if e else px for e, px in zip(row["error"], row["pixels"])])
        return {"shard": row["shard"], "rows": pickle.dumps((rows, errors))}


def _connect(address: str) -> bool:
    """Join the cluster at `address` ('auto': this node's; 'local': start one here). True if started here."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RuntimeBackendError("--ray: ray is not installed; fix: pip install 'madtp-deploy[ray]' "
                                  "(ray[data]), or drop --ray to embed locally") from exc
    if ray.is_initialized():
        return False
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--ray {address}: cannot join a Ray cluster ({str(exc).splitlines()[0][:160]}); fix: "
                         f"pass the head's address (ray://HOST:10001 or HOST:6379), 'auto' on a cluster node "
                         f"(after `ray start`), or 'local'") from exc
    return True


def run_ray(store: Store, paths: list[str], graph: Graph, batch_size: int, advance, *, address: str,
            actors: int = 2, cpus: float = 0.5, gpus: float = 0.0) -> None:
    import ray

    started = _connect(address)
    try:
        blob = ray.put({"name": graph.path.name, "graph": graph.path.read_bytes(), "sidecar": json.dumps(graph.sidecar)})
        batches = plan(store, batch_size)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # shards finish in order
        ctx.enable_progress_bars = False             # ours is the progress bar
        ds: Any = ray.data.from_items([{"shard": k, "index": idx, "path": [paths[i] for i in idx]} for k, idx in batches],
                                 override_num_blocks=len(batches))
        # reads and decoding as separate tasks (unequal CPU requests: Ray does not fuse them), the graph in actors
        ds = ds.map(_read, num_cpus=0.1)
        ds = ds.map(_decode, fn_kwargs={"size": graph.spec.image_size}, num_cpus=0.25)
        ds = ds.map(_GraphActor, fn_constructor_kwargs={"blob": blob, "backend": graph.backend},
                    compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus, num_gpus=gpus or None)
        acc: dict[int, tuple[list, list]] = {}
        for out in ds.iter_rows():
            k = int(out["shard"])
            rows, errors = pickle.loads(out["rows"])
            r, e = acc.setdefault(k, ([], []))
            r += rows
            e += errors
            if len(r) + len(e) == len(store.shard_range(k)):
                store.write_shard(k, *acc.pop(k))
            advance(len(rows) + len(errors))
        if acc:  # a bug (rows lost on the way), never the user's
            raise AssertionError(f"Ray pipeline: shards {sorted(acc)} incomplete")
    finally:
        if started:
            ray.shutdown()
