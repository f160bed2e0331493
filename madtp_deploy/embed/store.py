"""The index folder: manifest, Parquet shards and the errors file; what a resumed run has left to do.

Shard k covers the collection's images k*S .. k*S+S-1 (S: `shard_size`, fixed in the manifest). Its
errors are written first (errors.jsonl, rewritten whole and atomically), then the shard (atomically):
a shard file present means every image of it is either a row or an error line. Error lines of shards
without a file (a run killed between the two writes) are dropped on resume and recomputed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from ..files import atomic, read_json, temp_name, write_text_atomic

MANIFEST = "index.json"
ERRORS = "errors.jsonl"
SHARD = re.compile(r"^part-(\d{5,})\.parquet$")
FORMAT = 1
# what must match for a run to continue an index folder (anything else is another job)
JOB_KEYS = ("format", "collection_sha256", "count", "shard_size", "graph_sha256")


def shard_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def schema(dim: int, layers: int):
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("embedding", pa.list_(pa.float32(), dim)),
                      ("kept", pa.list_(pa.int64(), layers)), ("gflops", pa.float64())])


class Store:
    """An index folder being written: which shards are done, their errors, the writers."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        self.shard_size = manifest["shard_size"]
        self.count = manifest["count"]
        self.n_shards = -(-self.count // self.shard_size)

    @classmethod
    def open(cls, root: Path, manifest: dict) -> "Store":
        """Start `root`, or continue it when its manifest records the same job; refuse another job's."""
        root = Path(root)
        old_path = root / MANIFEST
        if old_path.is_file():
            old = read_json(old_path, UsageError, "manifest missing", f"pass a new --output folder, or delete {root}")
            diff = [k for k in JOB_KEYS if old.get(k) != manifest[k]]
            if diff:
                raise UsageError(f"--output {root}: holds another embedding job ({', '.join(diff)} differ{'s' if len(diff) == 1 else ''}"
                                 f" in {MANIFEST}); fix: pass a new --output folder, or the same --model, "
                                 f"--images and --shard-size to resume")
            manifest = dict(old, **{k: v for k, v in manifest.items() if k not in JOB_KEYS})
        elif root.is_dir() and any(root.iterdir()):
            raise UsageError(f"--output {root}: not empty and has no {MANIFEST}; fix: pass a new folder")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, manifest)
        for p in root.glob(".part-*"):  # temporaries of a killed write
            p.unlink(missing_ok=True)
        temp_name(root / ERRORS).unlink(missing_ok=True)
        write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=2))
        return store

    def done(self) -> set[int]:
        return {int(m.group(1)) for p in self.root.iterdir() if (m := SHARD.match(p.name))}

    def errors(self) -> list[dict]:
        """The error lines of finished shards (those of unfinished ones are recomputed)."""
        path = self.root / ERRORS
        if not path.is_file():
            return []
        done, out = self.done(), []
        for n, line in enumerate(path.read_text().splitlines()):
            try:
                e = json.loads(line)
                k = int(e["index"]) // self.shard_size
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: line {n + 1} is not an error record; fix: delete the file and the "
                                f"shards, then rerun") from exc
            if k in done:
                out.append(e)
        return out

    def shard_range(self, k: int) -> range:
        return range(k * self.shard_size, min((k + 1) * self.shard_size, self.count))

    def write_shard(self, k: int, rows: list[dict], errors: list[dict]) -> None:
        """rows: {index, path, embedding, kept, gflops}; errors: {index, path, error}. Errors first."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        have = {r["index"] for r in rows} | {e["index"] for e in errors}
        if have != set(self.shard_range(k)):  # a bug in a runner, never the user's
            raise AssertionError(f"shard {k}: rows for {len(have)} of {len(self.shard_range(k))} images")
        if errors:
            kept = self.errors() + sorted(errors, key=lambda e: e["index"])
            write_text_atomic(self.root / ERRORS, "".join(json.dumps(e) + "\n" for e in kept))
        rows = sorted(rows, key=lambda r: r["index"])
        m = self.manifest
        table = pa.table({"path": [r["path"] for r in rows],
                          "embedding": [np.asarray(r["embedding"], dtype=np.float32) for r in rows],
                          "kept": [np.asarray(r["kept"], dtype=np.int64) for r in rows],
                          "gflops": [float(r["gflops"]) for r in rows]}, schema=schema(m["dim"], m["layers"]))
        with atomic(self.root / shard_name(k)) as tmp:
            pq.write_table(table, tmp)


def read_index(root: Path):
    """(manifest, pyarrow Table of every shard in collection order) of an index folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    manifest = read_json(root / MANIFEST, DataError, "not an index folder (no index.json)",
                         "pass --index with a folder `madtp-deploy embed` wrote")
    shards = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := SHARD.match(p.name)))
    if not shards:
        raise DataError(f"{root}: no shards (part-*.parquet); fix: run `madtp-deploy embed --output {root}` "
                        f"to the end")
    try:
        tables = [pq.read_table(p) for _, p in shards]
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{root}: a shard is unreadable ({exc}); fix: delete it and rerun embed to rewrite it") from exc
    return manifest, pa.concat_tables(tables)
