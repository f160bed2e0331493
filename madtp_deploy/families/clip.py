"""CLIP (OpenAI / HF / MADTP checkpoints): an image and a text encoder, retrieval by cosine."""

from __future__ import annotations

from ..specs import ClipSpec
from . import Family, register

# the files that define CLIP's exported graphs (an edit to any of them re-exports a cached graph)
GRAPH_CODE = ("modes.py", "models/clip.py", "models/layout.py", "models/inputs.py", "pruning/dtp.py",
              "pruning/mag.py", "pruning/step.py", "onnx/io.py", "onnx/export.py", "onnx/fold.py")

RECALL_KEYS = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")


def evaluate(model, data, split: str, batch_size: int, tokenizer=None, **_) -> dict:
    """Retrieval recall both ways, GFLOPs per pair and kept tokens on a dataset split."""
    from ..data import dataset
    from ..evaluate import evaluate as run

    s = dataset.load(data, split)
    r = run(model, s, dataset.tokenizer_for(data, model.spec, tokenizer), batch_size)
    r["split"] = str(s.annotation)
    return r


def eval_report(r: dict) -> tuple[list[str], list[list[str]], list[str]]:
    columns = [*RECALL_KEYS, "GFLOPs/pair", "reduction"]
    rows = [[f"{r[k]:.2f}" for k in RECALL_KEYS] + [f"{r['gflops_per_pair']:.4f}",
                                                      f"{100 * r['gflops_reduction']:.1f}%"]]
    return columns, rows, [f"kept image tokens per layer: {[round(v, 1) for v in r['kept_image_per_layer']]}"]


register(Family(
    name="clip", title="CLIP", spec_type=ClipSpec, matches=lambda spec: True,
    build="madtp_deploy.models.clip:MadtpCLIP",
    contracts={"image": "madtp_deploy.onnx.io:clip_image", "text": "madtp_deploy.onnx.io:clip_text"},
    graph_code=GRAPH_CODE,
    describe="madtp_deploy.flops:describe",
    image_gflops="madtp_deploy.flops:image_gflops",
    packed_image_gflops="madtp_deploy.flops:packed_image_gflops",
    data_kind="retrieval", default_init="madtp-clip-tiny",
    training="madtp_deploy.train.trainer:HOOKS",
    evaluator="madtp_deploy.families.clip:evaluate", eval_report="madtp_deploy.families.clip:eval_report",
    bench="madtp_deploy.benchmark.runner:run_image_bench",
    bench_variants=("dense", "reference", "invariant", "packed", "static"),
    features=frozenset({"static", "aoti", "calibrate", "serve", "train", "eval", "bench"}),
))
