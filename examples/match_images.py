"""Match a folder of images against captions with an exported MADTP model, and print each image's GFLOPs.

    madtp-deploy make-data --output data/scenes --train 0 --val 0 --test 8
    madtp-deploy export --output export/                       # ONNX (or --format aoti: .pt2 packages)
    python examples/match_images.py export/madtp-clip-tiny.image.onnx export/madtp-clip-tiny.text.onnx \\
        --images data/scenes/images --vocab data/scenes/vocab.json \\
        --captions "a red circle" "a small blue square left of a green triangle"

The artifacts' suffix picks the runtime: .onnx onnxruntime, .pt2 AOTInductor, .plan TensorRT.
The GFLOPs come from the `kept` output: the tokens each image kept after each layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from madtp_deploy import flops
from madtp_deploy.data.retrieval import load_image
from madtp_deploy.data.tokenize import WordTokenizer
from madtp_deploy.errors import MadtpError
from madtp_deploy.runtime import open_session
from madtp_deploy.specs import ClipSpec

BACKEND_BY_SUFFIX = {".onnx": "ort", ".pt2": "aoti", ".plan": "trt"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def spec_of(artifact: Path) -> ClipSpec:
    """The model spec recorded in the artifact's sidecar (.json beside it)."""
    return ClipSpec.from_dict(json.loads(artifact.with_suffix(".json").read_text())["model"]["spec"])


def embed(artifact: Path, inputs: dict) -> dict:
    return open_session(artifact, backend=BACKEND_BY_SUFFIX[artifact.suffix]).run(inputs)


def match(image_artifact: Path, text_artifact: Path, images: list[Path], captions: list[str], vocab: Path):
    """Rows of (image name, best caption, cosine similarity, GFLOPs)."""
    spec = spec_of(image_artifact)
    pixels = torch.stack([load_image(p, spec.image_size, str(p)) for p in images]).numpy()
    ids, mask = WordTokenizer.from_file(vocab, spec.vocab_size, spec.context_length)(captions)
    img = embed(image_artifact, {"pixels": pixels})
    txt = embed(text_artifact, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    a = img["embeds"] / np.linalg.norm(img["embeds"], axis=1, keepdims=True)
    b = txt["embeds"] / np.linalg.norm(txt["embeds"], axis=1, keepdims=True)
    sim = a @ b.T
    gflops = flops.image_flops(spec, torch.from_numpy(img["kept"]), pruning=True).gflops
    best = sim.argmax(1)
    return [(p.name, captions[j], float(sim[i, j]), float(gflops[i]), img["kept"][i].tolist())
            for i, (p, j) in enumerate(zip(images, best))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image_artifact", type=Path, help="exported image encoder (.onnx, .pt2 or .plan)")
    ap.add_argument("text_artifact", type=Path, help="exported text encoder (.onnx, .pt2 or .plan)")
    ap.add_argument("--images", type=Path, required=True, help="folder of images")
    ap.add_argument("--captions", nargs="+", required=True)
    ap.add_argument("--vocab", type=Path, required=True, help="the dataset's vocab.json (word tokenizer)")
    ap.add_argument("--limit", type=int, default=16, help="at most this many images (sorted by name)")
    args = ap.parse_args(argv)
    try:
        for a in (args.image_artifact, args.text_artifact):
            if a.suffix not in BACKEND_BY_SUFFIX:
                raise SystemExit(f"{a}: unknown artifact type; fix: pass an .onnx, .pt2 or .plan file")
        images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:args.limit]
        if not images:
            raise SystemExit(f"{args.images}: no images; fix: pass a folder with .png/.jpg files")
        rows = match(args.image_artifact, args.text_artifact, images, args.captions, args.vocab)
    except MadtpError as exc:
        print(f"match_images: error: {exc}", file=sys.stderr)
        return 2
    for name, caption, score, gf, kept in rows:
        print(f"{name}: {caption!r} (cosine {score:.3f}), {gf:.4f} GFLOPs, kept {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
