"""fvcore on the reference's own BLIP NLVR2 (double125/MADTP), as its utils.print_params_and_flops
counts it, next to our analytic count (madtp_deploy/flops_blip.py), module by module.

Runs in the reference's environment (see scripts/blip_reference_parity.py) with this repository on
PYTHONPATH:

    PYTHONPATH=. /path/to/refenv/bin/python scripts/blip_reference_flops.py --reference <reference dir>

Random weights (FLOPs do not depend on them); ViT-B/16 at 384 px, BERT-base from the reference's
configs/med_config.json; the reference's fixed test sentence, tokenized with a WordPiece vocabulary
that splits it as bert-base-uncased does (params -> para ##ms, flops -> flop ##s: 36 tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

SENTENCE = ("Params and FLOPs test, test params and FLOPs, params and FLOPs test, test params and FLOPs, "
            "params and FLOPs test")
VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "and", "test", "para", "##ms", "flop", "##s", ","]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ref = args.reference.resolve()
    sys.path.insert(0, str(ref))
    from fvcore.nn import FlopCountAnalysis

    import models.blip_nlvr as blip_nlvr  # the reference, from the checkout

    from madtp_deploy import flops_blip
    from madtp_deploy.specs import get_spec

    work = Path(tempfile.mkdtemp(prefix="blip_flops_"))
    (work / "pretrained" / "bert-base-uncased").mkdir(parents=True)
    (work / "pretrained" / "bert-base-uncased" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        model = blip_nlvr.BLIP_NLVR(med_config=str(ref / "configs" / "med_config.json"), image_size=384,
                                    evaluate=True).eval()
    finally:
        os.chdir(cwd)
    tokens = int(model.tokenizer([SENTENCE], return_tensors="pt").attention_mask.sum())

    class Wrapper(torch.nn.Module):  # as utils.print_params_and_flops('nlvr', ...)
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, inputs):
            images, text, targets = inputs
            return self.model(images, text, targets=targets, train=False)

    inputs = [torch.randn(2, 3, 384, 384), [SENTENCE], torch.randint(0, 2, (1,))]
    with torch.no_grad():
        flop = FlopCountAnalysis(Wrapper(model), (inputs,))
        flop.unsupported_ops_warnings(False)
        flop.uncalled_modules_warnings(False)
        total = flop.total() / 1e9
        by_module = {k: v / 1e9 for k, v in flop.by_module().items()
                     if k.count(".") <= 2 and k.startswith("model")}
        by_op = {k: v / 1e9 for k, v in flop.by_operator().items()}

    s = get_spec("blip-nlvr")
    ki, tt, kt = flops_blip.dense_nlvr(s, tokens)
    ours = flops_blip.nlvr_flops(s, ki, tt, kt, pruning=False)
    ours_mag = flops_blip.nlvr_flops(s, ki, tt, kt, pruning=True)
    out = {"tokens": tokens, "fvcore_total": total, "fvcore_by_operator": by_op,
           "fvcore_by_module": by_module,
           "ours_fvcore_convention": flops_blip.fvcore_gflops(s, tokens),
           "ours_gmacs_dense": ours.gmacs.item(), "ours_gmacs_with_mag": ours_mag.gmacs.item(),
           "ours_layernorm_g": flops_blip.FVCORE_LAYERNORM * flops_blip.nlvr_layernorm_elements(s, tokens) / 1e9}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
