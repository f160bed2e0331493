"""examples/match_images.py on the shipped model's ONNX graphs and a few generated scenes."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from madtp_deploy import flops
from madtp_deploy.data import scenes
from madtp_deploy.data.retrieval import load_image
from madtp_deploy.data.tokenize import WordTokenizer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "match_images.py"


def _example():
    spec = importlib.util.spec_from_file_location("match_images", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_match_images_prints_eager_best_caption_and_gflops(shipped_onnx, tmp_path, capsys):
    m, out = shipped_onnx
    root = scenes.generate(tmp_path / "scenes", n_train=0, n_val=0, n_test=5, seed=3)
    entries = json.loads((root / "scenes_test.json").read_text())
    captions = [e["caption"][0] for e in entries]
    rc = _example().main([str(out / "shipped.image.onnx"), str(out / "shipped.text.onnx"), "--images",
                          str(root / "images"), "--vocab", str(root / "vocab.json"), "--captions", *captions])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 5
    images = sorted((root / "images").glob("*.png"))
    px = torch.stack([load_image(p, m.spec.image_size, "") for p in images])
    ids, mask = WordTokenizer.from_file(root / "vocab.json", m.spec.vocab_size, m.spec.context_length)(captions)
    with torch.no_grad():
        img, txt = m.encode_image(px), m.encode_text(ids, mask)
    sim = torch.nn.functional.normalize(img.embeds, dim=-1) @ torch.nn.functional.normalize(txt.embeds, dim=-1).T
    gflops = flops.image_flops(m.spec, img.kept, pruning=True).gflops
    assert len(set(map(tuple, img.kept.tolist()))) > 1, "the images should prune differently"
    for i, line in enumerate(lines):
        best = int(sim[i].argmax())
        assert line.startswith(f"{images[i].name}: {captions[best]!r}")
        assert f"{gflops[i].item():.4f} GFLOPs" in line and f"kept {img.kept[i].tolist()}" in line
    assert np.isfinite(sim.numpy()).all()
