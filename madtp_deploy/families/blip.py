"""BLIP: retrieval (ITC image and text encoders, ITM re-ranking) and NLVR2 (one graph: two images and a
statement -> logits). Both share the ViT + BERT model code (models/blip.py)."""

from __future__ import annotations

from ..specs import BlipSpec
from . import Family, register
from .clip import GRAPH_CODE as CLIP_GRAPH_CODE

# BLIP's graphs trace models/blip.py, which builds on CLIP's layer pieces (models/clip.py) and layout
GRAPH_CODE = CLIP_GRAPH_CODE + ("models/blip.py",)
RECALL_KEYS = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")


def evaluate_retrieval(model, data, split: str, batch_size: int, tokenizer=None, k: int = 16, **_) -> dict:
    """Recall by ITC and after ITM re-ranking of the top k, GFLOPs per pair (ITC) and per re-ranked pair."""
    from ..data import dataset
    from ..train.blip_retrieval import evaluate, tokenizer_for

    s = dataset.load(data, split)
    r = evaluate(model, s, tokenizer_for(data, model.spec, tokenizer), batch_size, k)
    r["split"], r["k"] = str(s.annotation), k
    return r


def retrieval_report(r: dict) -> tuple[list[str], list[list[str]], list[str]]:
    columns = ["ranking", *RECALL_KEYS, "GFLOPs/pair", "reduction"]
    rows = [["ITC", *[f"{r['recall_itc'][key]:.2f}" for key in RECALL_KEYS], f"{r['gflops_per_pair']:.5f}",
             f"{100 * r['gflops_reduction']:.1f}%"],
            [f"ITM top-{r['k']}", *[f"{r['recall_itm'][key]:.2f}" for key in RECALL_KEYS],
             f"{r['gflops_itm_per_pair']:.5f}",
             f"{100 * (1 - r['gflops_itm_per_pair'] / r['gflops_itm_dense_per_pair']):.1f}%"]]
    notes = [f"GFLOPs (2/MAC, per instance): ITC {r['gflops_per_pair']:.5f} per image + caption (dense "
             f"{r['gflops_dense_per_pair']:.5f}); ITM {r['gflops_itm_per_pair']:.5f} more per re-ranked pair "
             f"(dense {r['gflops_itm_dense_per_pair']:.5f}), {r['itm_pairs']} pairs",
             f"kept image tokens per layer: {[round(v, 1) for v in r['kept_image_per_layer']]}; text (ITC): "
             f"{[round(v, 1) for v in r['kept_text_per_layer']]}; text (ITM): "
             f"{[round(v, 1) for v in r['kept_itm_text_per_layer']]}"]
    return columns, rows, notes


def evaluate_nlvr(model, data, split: str, batch_size: int, tokenizer=None, **_) -> dict:
    """NLVR2 accuracy, GFLOPs per instance (an image pair and its statement) and kept tokens."""
    from ..data import nlvr
    from ..train.blip_trainer import evaluate, tokenizer_for

    s = nlvr.load(data, split)
    r = evaluate(model, s, tokenizer_for(data, tokenizer), batch_size)
    r["split"] = str(s.annotation)
    return r


def nlvr_report(r: dict) -> tuple[list[str], list[list[str]], list[str]]:
    columns = ["accuracy", "GFLOPs/instance", "dense", "reduction"]
    rows = [[f"{r['accuracy']:.2f}", f"{r['gflops']:.5f}", f"{r['gflops_dense']:.5f}",
             f"{100 * r['gflops_reduction']:.1f}%"]]
    notes = [f"kept image tokens per layer: {[round(v, 1) for v in r['kept_image_per_layer']]}; "
             f"text: {[round(v, 1) for v in r['kept_text_per_layer']]}"]
    return columns, rows, notes


register(Family(
    name="blip-retrieval", title="BLIP retrieval", spec_type=BlipSpec, matches=lambda s: s.task == "retrieval",
    build="madtp_deploy.models.blip:build",
    contracts={"image": "madtp_deploy.onnx.io:blip_image", "text": "madtp_deploy.onnx.io:blip_text"},
    graph_code=GRAPH_CODE,
    describe="madtp_deploy.flops_blip:describe",
    image_gflops="madtp_deploy.flops_blip:image_gflops",
    packed_image_gflops="madtp_deploy.flops_blip:packed_image_gflops",
    data_kind="retrieval", default_init="blip-retrieval-tiny",
    training="madtp_deploy.train.blip_retrieval:HOOKS",
    evaluator="madtp_deploy.families.blip:evaluate_retrieval",
    eval_report="madtp_deploy.families.blip:retrieval_report",
    bench="madtp_deploy.benchmark.runner:run_image_bench",
    features=frozenset({"serve", "train", "eval", "bench"}),
))

register(Family(
    name="blip-nlvr", title="BLIP NLVR2", spec_type=BlipSpec, matches=lambda s: s.task == "nlvr",
    build="madtp_deploy.models.blip:build",
    contracts={"nlvr": "madtp_deploy.onnx.io:blip_nlvr"},
    graph_code=GRAPH_CODE,
    describe="madtp_deploy.flops_blip:describe",
    data_kind="nlvr", default_init="blip-nlvr-tiny",
    training="madtp_deploy.train.blip_trainer:HOOKS",
    evaluator="madtp_deploy.families.blip:evaluate_nlvr", eval_report="madtp_deploy.families.blip:nlvr_report",
    bench="madtp_deploy.benchmark.nlvr:run_nlvr_bench",
    features=frozenset({"serve", "train", "eval", "bench"}),
))
