"""CLIP (OpenAI / HF / MADTP checkpoints): an image and a text encoder, retrieval by cosine."""

from __future__ import annotations

from ..specs import ClipSpec
from . import Family, register

# the files that define CLIP's exported graphs (an edit to any of them re-exports a cached graph)
GRAPH_CODE = ("modes.py", "models/clip.py", "models/tower.py", "models/layout.py", "models/inputs.py", "pruning/dtp.py",
              "pruning/mag.py", "pruning/step.py", "onnx/io.py", "onnx/export.py", "onnx/fold.py")

register(Family(
    name="clip", title="CLIP", spec_type=ClipSpec, matches=lambda spec: True,
    build="madtp_deploy.models.clip:MadtpCLIP",
    contracts={"image": "madtp_deploy.onnx.io:clip_image", "text": "madtp_deploy.onnx.io:clip_text"},
    graph_code=GRAPH_CODE,
    describe="madtp_deploy.flops:describe",
    image_gflops="madtp_deploy.flops:image_gflops",
    packed_image_gflops="madtp_deploy.flops:packed_image_gflops",
    data_kind="retrieval", default_init="madtp-clip-deep",
    training="madtp_deploy.train.clip:HOOKS",
    evaluator="madtp_deploy.families.evaluators:evaluate_clip", eval_report="madtp_deploy.families.evaluators:clip_report",
    bench="madtp_deploy.benchmark.runner:run_image_bench", serving="madtp_deploy.serve.table:CLIP",
    bench_variants=("dense", "reference", "invariant", "packed", "static", "tome", "topk", "lowres", "invariant-int8", "packed-int8", "static-int8"),
    features=frozenset({"static", "aoti", "calibrate", "serve", "train", "eval", "bench", "peers", "gallery"}),
))
