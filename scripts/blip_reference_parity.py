"""Our BLIP NLVR2 against the reference code (double125/MADTP), on the same random weights and inputs.

Runs in a separate environment that can import the reference (torch, timm 0.9, transformers 4.x,
einops, fvcore), with this repository on PYTHONPATH; the reference is read from a checkout given on
the command line and is never copied here:

    git --git-dir=<MADTP git dir> archive HEAD models configs utils.py | tar -x -C <reference dir>
    PYTHONPATH=. /path/to/refenv/bin/python scripts/blip_reference_parity.py --reference <reference dir>

What it does: builds the reference's `BLIP_NLVR` (its ViT, its NLVR BERT, its forward and tokenizer)
at a small geometry (the ViT and BERT sizes are the only things changed), perturbs every parameter
so no LayerNorm is the identity, saves it as a MADTP checkpoint, loads that file with
`madtp_deploy.load`, and compares logits and per-layer kept token counts (read from the reference's
blocks by forward hooks) at batch 1 and in max-keep batches, over several temperatures.
Exit status 1 if anything disagrees.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

WORDS = ["there", "is", "are", "a", "the", "two", "one", "red", "blue", "green", "circle", "square", "left",
         "right", "of", "image", "images", "both", "in", "at", "least", "params", "and", "flop", "##s", "test",
         "para", "##ms", ",", "."]
SPECIALS = ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(directory: Path, size: int) -> None:
    words = SPECIALS + WORDS
    words += [f"w{i}" for i in range(size - len(words))]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")


def build_reference(ref: Path, work: Path, g: dict):
    """The reference's BLIP_NLVR with a small ViT and BERT (everything else as published)."""
    sys.path.insert(0, str(ref))
    import models.blip_nlvr as blip_nlvr  # noqa: E402 - the reference, from the checkout
    from models.vit import VisionTransformer  # noqa: E402

    med = dict(json.loads((ref / "configs" / "med_config.json").read_text()))
    med.update(hidden_size=g["width"], num_attention_heads=g["width"] // 64, num_hidden_layers=g["text_layers"],
               intermediate_size=4 * g["width"], vocab_size=g["vocab"], max_position_embeddings=g["positions"],
               encoder_width=g["width"])
    (work / "med_config.json").write_text(json.dumps(med))

    def small_vit(*args, **kwargs):
        return VisionTransformer(img_size=g["image"], patch_size=g["patch"], embed_dim=g["width"],
                                 depth=g["vision_layers"], num_heads=g["width"] // 64, sd_dim=kwargs["sd_dim"],
                                 drop_path_rate=0.1, evaluate=False), g["width"]

    blip_nlvr.create_vit = small_vit  # the one change: the ViT's size
    cwd = os.getcwd()
    os.chdir(work)  # the reference's init_tokenizer reads ./pretrained/bert-base-uncased/
    try:
        model = blip_nlvr.BLIP_NLVR(med_config=str(work / "med_config.json"), image_size=g["image"],
                                    config={"sd_num": g["sd_num"], "sd_dim": g["width"], "batch_size_train": 2})
    finally:
        os.chdir(cwd)
    model.eval()
    with torch.no_grad():  # no LayerNorm may stay the identity, no bias zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def reference_counts(model):
    """Hooks that record the tokens each ViT block and each BERT layer outputs."""
    seen = {"vision": [], "text": []}
    for blk in model.visual_encoder.blocks:
        blk.register_forward_hook(lambda m, i, o: seen["vision"].append(o.shape[1]))
    for layer in model.text_encoder.encoder.layer:
        layer.register_forward_hook(lambda m, i, o: seen["text"].append(o[0].shape[1]))
    return seen


def compare(mode, temperature, batch, got, want, vision, text) -> dict:
    diff = (got.logits - want).abs().max().item()
    v_same = all((got.kept_image[:, :, i] == n).all() for i, n in enumerate(vision))
    t_same = all((got.kept_text[:, i] == n).all() for i, n in enumerate(text))
    good = bool(diff <= 1e-5 and v_same and t_same)
    print(f"{mode:13} T {temperature:5.2f} batch {batch}: max |logit diff| {diff:.2e}  vision kept ref {vision} "
          f"ours {got.kept_image[0, 0].tolist()}  text kept ref {text} ours {got.kept_text[0].tolist()}  "
          f"{'OK' if good else 'MISMATCH'}")
    return {"mode": mode, "temperature": temperature, "batch": batch, "max_abs_logit_diff": diff,
            "vision_kept_ref": vision, "vision_kept_ours": got.kept_image[0, 0].tolist(),
            "text_kept_ref": text, "text_kept_ours": got.kept_text[0].tolist(), "match": good}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, required=True, help="a checkout of double125/MADTP (models/, configs/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the comparison here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    g = dict(width=128, vision_layers=4, text_layers=8, image=32, patch=8, vocab=64, positions=40, sd_num=16)

    import madtp_deploy
    from madtp_deploy.data.bert_tokenizer import BlipTokenizer

    work = Path(tempfile.mkdtemp(prefix="blip_parity_"))
    write_vocab(work / "pretrained" / "bert-base-uncased", g["vocab"] - 2)
    ref = build_reference(args.reference.resolve(), work, g)
    counts = reference_counts(ref)
    torch.save({"model": ref.state_dict(), "epoch": 0, "temperature": 0.0}, work / "madtp_nlvr.pth")
    ours = madtp_deploy.load(work / "madtp_nlvr.pth", mode="reference")
    tok = BlipTokenizer(work / "pretrained" / "bert-base-uncased")
    print(f"ours: {ours.spec}")

    # equal-length sentences (the reference pads a batch; padding is where the two differ: docs/NOTES.md)
    whole = [w for w in WORDS if not w.startswith("##") and w not in ("para", "flop")]
    sentences = [" ".join(whole[int(j)] for j in torch.randint(len(whole), (14,))) for _ in range(4)]
    lengths = {int(tok([s])[1].sum()) for s in sentences}
    assert len(lengths) == 1, f"sentences must tokenize to one length, got {lengths}"
    b = len(sentences)
    scale = torch.linspace(0.3, 3.0, 2 * b)[:, None, None, None]
    images = torch.randn(2 * b, 3, g["image"], g["image"]) * scale
    targets = torch.zeros(b, dtype=torch.long)

    inv = madtp_deploy.load(work / "madtp_nlvr.pth", mode="invariant")
    rows, ok = [], True
    for temperature in (0.0, 0.5, 1.0, 2.0, 5.0, 20.0):
        ours.temperature = inv.temperature = temperature
        batch_one = []
        for sel in [[i] for i in range(b)] + [list(range(b))]:
            img = torch.cat([images[sel], images[[b + i for i in sel]]])
            counts["vision"].clear()
            counts["text"].clear()
            with torch.no_grad():
                want = ref(img, [sentences[i] for i in sel], targets[sel], temperature=temperature, train=False)
                ids, mask = tok([sentences[i] for i in sel])
                got = ours.nlvr(img[:len(sel)], img[len(sel):], ids, mask)
            vision, text = list(counts["vision"]), list(counts["text"])
            if len(sel) == 1:
                batch_one.append((want, vision, text))
            rows.append(compare("reference", temperature, len(sel), got, want, vision, text))
        # invariant mode, whole batch: every instance must get the reference's batch-1 answer
        with torch.no_grad():
            ids, mask = tok(sentences)
            got = inv.nlvr(images[:b], images[b:], ids, mask)
        for i, (want, vision, text) in enumerate(batch_one):
            one = type(got)(got.logits[i:i + 1], got.kept_image[i:i + 1], got.kept_text[i:i + 1], got.tokens_text)
            rows.append(compare(f"invariant[{i}]", temperature, b, one, want, vision, text))
    ok = all(r["match"] for r in rows)
    # informational: a padded batch, where we mask padding and the reference scores it (docs/NOTES.md)
    padded = [" ".join(s.split()[:n]) for s, n in zip(sentences, (14, 11, 8, 5))]
    for temperature in (0.0, 2.0):
        ours.temperature = temperature
        counts["vision"].clear()
        counts["text"].clear()
        with torch.no_grad():
            want = ref(images, padded, targets, temperature=temperature, train=False)
            got = ours.nlvr(images[:b], images[b:], *tok(padded))
        r = compare("padded(info)", temperature, b, got, want, list(counts["vision"]), list(counts["text"]))
        rows.append({**r, "informational": True})
    checked = sum(not r.get("informational") for r in rows)
    print(f"{'all match' if ok else 'MISMATCH'} ({checked} comparisons; {len(rows) - checked} informational)")
    if args.json:
        args.json.write_text(json.dumps({"geometry": g, "rows": rows, "all_match": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
