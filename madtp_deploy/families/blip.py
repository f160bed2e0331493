"""BLIP: retrieval (ITC image and text encoders, ITM re-ranking) and NLVR2 (one graph: two images and a
statement -> logits). Both share the ViT + BERT model code (models/blip.py)."""

from __future__ import annotations

from ..specs import BlipSpec
from . import Family, register
from .clip import GRAPH_CODE as CLIP_GRAPH_CODE

# BLIP's graphs trace models/blip.py, which builds on CLIP's layer pieces (models/clip.py) and layout
GRAPH_CODE = CLIP_GRAPH_CODE + ("models/blip.py",)


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
    evaluator="madtp_deploy.families.evaluators:evaluate_retrieval",
    eval_report="madtp_deploy.families.evaluators:retrieval_report",
    bench="madtp_deploy.benchmark.runner:run_image_bench", serving="madtp_deploy.serve.table:BLIP_RETRIEVAL",
    features=frozenset({"serve", "train", "eval", "bench"}),
))

register(Family(
    name="blip-nlvr", title="BLIP NLVR2", spec_type=BlipSpec, matches=lambda s: s.task == "nlvr",
    build="madtp_deploy.models.blip:build",
    contracts={"nlvr": "madtp_deploy.onnx.io:blip_nlvr"},
    graph_code=GRAPH_CODE,
    describe="madtp_deploy.flops_blip:describe",
    data_kind="nlvr", default_init="blip-nlvr-tiny",
    training="madtp_deploy.train.blip_nlvr:HOOKS",
    evaluator="madtp_deploy.families.evaluators:evaluate_nlvr", eval_report="madtp_deploy.families.evaluators:nlvr_report",
    bench="madtp_deploy.benchmark.nlvr:run_nlvr_bench", serving="madtp_deploy.serve.table:BLIP_NLVR",
    features=frozenset({"serve", "train", "eval", "bench"}),
))
