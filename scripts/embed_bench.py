"""`embed` (local) vs the in-process packed graph on the same images at the same batch size.

    nice .venv/bin/python scripts/embed_bench.py --n 10000 --batch-size 32

Generates N scenes (64 px), exports the shipped model's packed graph (cached), then, one run each, side
by side: (1) the packed graph's session.run over the images already decoded in memory (what `bench`
times: no file reads, no decoding, no writing), (2) `embed_collection` on the folder (reads, decodes,
runs, writes Parquet shards). Prints images/s of both and the ratio.
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from madtp_deploy.data.scenes import generate
from madtp_deploy.embed import embed_collection
from madtp_deploy.embed.job import Embedder, decode, list_images, read_bytes, resolve_graph

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=10000)
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--work", type=Path, default=None, help="folder to keep the images in (default: temporary)")
ap.add_argument("--cache", type=Path, default=Path("export/.embed"))
args = ap.parse_args()

work = args.work or Path(tempfile.mkdtemp(prefix="embed-bench-"))
if not (work / "scenes" / "images").is_dir() or len(list((work / "scenes" / "images").glob("*.png"))) != args.n:
    generate(work / "scenes", n_train=0, n_val=0, n_test=args.n)
images = work / "scenes" / "images"
graph = resolve_graph("shipped", cache=args.cache, log=lambda *_: None)
paths = list_images(images)
px = np.stack([decode(read_bytes(p), graph.spec.image_size) for p in paths])
emb = Embedder(graph.path, graph.backend, graph.sidecar)
b = args.batch_size
emb(px[:b])  # warm-up
t0 = time.perf_counter()
for j in range(0, len(px), b):
    emb(px[j:j + b])
graph_rate = len(px) / (time.perf_counter() - t0)
out = work / "index"
shutil.rmtree(out, ignore_errors=True)
s = embed_collection("shipped", images, out, batch_size=b, cache=args.cache, log=lambda *_: None)
print(json.dumps({"images": len(paths), "batch_size": b, "graph_only_images_per_s": round(graph_rate, 1),
                  "embed_images_per_s": round(s["images_per_s"], 1),
                  "ratio": round(s["images_per_s"] / graph_rate, 3), "embed_seconds": round(s["seconds"], 2)}))
if args.work is None:
    shutil.rmtree(work, ignore_errors=True)
