"""Top-k search of an embedded collection by a caption or an image: cosine similarity, exact.

numpy for small collections; FAISS (PyPI `faiss-cpu`, the [faiss] extra) when it is importable: an
exact inner-product index (IndexFlatIP) on the normalised embeddings, so both give the same ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from .store import read_index

ENGINES = ("auto", "numpy", "faiss")


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(1e-12))


@dataclass
class Index:
    root: Path
    manifest: dict
    paths: list[str]
    vectors: np.ndarray  # [N, D] float32, unit length

    @classmethod
    def load(cls, root: Path) -> "Index":
        manifest, table = read_index(root)
        emb = np.asarray(table.column("embedding").combine_chunks().flatten(), dtype=np.float32)
        return cls(Path(root), manifest, table.column("path").to_pylist(),
                   normalise(emb.reshape(len(table), manifest["dim"])))

    def top_k(self, query: np.ndarray, k: int, engine: str = "auto") -> tuple[str, list[tuple[str, float]]]:
        """(engine used, [(path, cosine)] best first)."""
        if engine not in ENGINES:
            raise UsageError(f"--engine {engine!r}: unknown; fix: use one of {', '.join(ENGINES)}")
        faiss = _faiss() if engine in ("auto", "faiss") else None
        if engine == "faiss" and faiss is None:
            raise UsageError("--engine faiss: faiss is not installed; fix: pip install 'madtp-deploy[faiss]' "
                             "(faiss-cpu), or use --engine numpy")
        q = normalise(query.reshape(1, -1))
        k = min(k, len(self.paths))
        if faiss is not None:
            ix = faiss.IndexFlatIP(self.vectors.shape[1])
            ix.add(self.vectors)
            scores, idx = ix.search(q, k)
            return "faiss", [(self.paths[i], float(s)) for i, s in zip(idx[0], scores[0])]
        sims = self.vectors @ q[0]
        best = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        best = best[np.lexsort((best, -sims[best]))]  # by score, ties by collection order (as FAISS)
        return "numpy", [(self.paths[i], float(sims[i])) for i in best]


def _graph(index: Index, key: str, what: str) -> Path:
    p = index.manifest.get(key)
    if not p:
        raise UsageError(f"{index.root}: the index has no {what} graph (embedded from an image graph without "
                         f"its text graph beside it); fix: embed with --model SOURCE, or query with --image")
    if not Path(p).is_file():
        raise DataError(f"{index.root}/index.json: {key} {p} not found (export cache removed?); fix: rerun "
                        f"`madtp-deploy embed` with the same --model and --cache, which re-exports it")
    return Path(p)


def embed_text(index: Index, text: str) -> np.ndarray:
    from .. import families
    from ..files import read_json
    from ..runtime import open_session
    from ..serve.handler import load_tokenizer

    path = _graph(index, "text_graph", "text")
    spec = families.spec_from_record(read_json(path.with_suffix(".json"), DataError, "sidecar missing",
                                               "rerun `madtp-deploy embed`"))
    tok = index.manifest.get("tokenizer")
    if not tok:
        raise DataError(f"{index.root}/index.json: no tokenizer recorded; fix: rerun `madtp-deploy embed`")
    ids, mask = load_tokenizer(spec, tok, index.root)([text], "--text")
    return open_session(path, "ort").run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})["embeds"][0]


def embed_image(index: Index, image: Path) -> np.ndarray:
    from .job import Embedder, decode, read_bytes
    from ..files import read_json

    path = _graph(index, "graph", "image")
    side = read_json(path.with_suffix(".json"), DataError, "sidecar missing", "rerun `madtp-deploy embed`")
    emb = Embedder(path, index.manifest.get("backend", "ort"), side)
    px = decode(read_bytes(str(image)), emb.spec.image_size)
    if isinstance(px, str):
        raise DataError(f"--image {image}: {px}; fix: pass a PNG/JPEG file")
    return emb(px[None])[0][0]


def search_index(index: Path, *, text: str | None = None, image: Path | None = None, k: int = 10,
                 engine: str = "auto") -> dict:
    """The top-k images of the index for a caption or an image: {"query", "engine", "results"}."""
    if (text is None) == (image is None):
        raise UsageError("search: pass exactly one of --text and --image; fix: e.g. --text \"a red cube\"")
    if k < 1:
        raise UsageError(f"--k {k}: must be 1 or more; fix: e.g. --k 10")
    ix = Index.load(Path(index))
    q = embed_text(ix, text) if text is not None else embed_image(ix, Path(image))  # type: ignore[arg-type]
    used, hits = ix.top_k(q, k, engine)
    return {"index": str(index), "query": {"text": text} if text is not None else {"image": str(image)},
            "engine": used, "size": len(ix.paths),
            "results": [{"rank": r + 1, "path": p, "score": s} for r, (p, s) in enumerate(hits)]}
