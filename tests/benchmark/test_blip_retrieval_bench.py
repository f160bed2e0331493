"""`madtp-deploy bench` on BLIP retrieval: the image encoder, every variant, torch and onnxruntime,
per-image GFLOPs from BLIP's ViT (flops_blip) and the kept counts."""

import json
import shutil
import subprocess

import pytest
import torch

from madtp_deploy import flops, flops_blip
from madtp_deploy.benchmark import report
from madtp_deploy.benchmark.runner import BenchConfig, image_gflops, run_bench
from madtp_deploy.specs import get_spec

from ..blip_retrieval_shared import CLI, MODE, ONE_THREAD, SPEC, TEMPERATURE, blip_exported  # noqa: F401 - fixture

VARIANTS = ("dense", "reference", "invariant", "packed")
FAST = ["--warmup-s", "0", "--min-runs", "2", "--pool", "16"]


def _dense_gflops() -> float:
    s = get_spec(SPEC)
    return float(flops_blip.itc_image_flops(s, torch.full((1, s.vision_layers), s.vision_tokens), False).gflops)


def test_pruned_gflops_are_blips():
    """BLIP's MAG meets space_dict directly: no q_map projection as CLIP's formula counts."""
    s = get_spec(SPEC)
    kept = torch.tensor([[9, 8], [11, 9]])
    want = flops_blip.itc_image_flops(s, kept, True).gflops
    assert torch.equal(image_gflops(s, kept, True), want)
    assert not torch.allclose(flops.image_flops(s, kept, True).gflops, want)


def test_cli_bench_rows_for_every_variant(tmp_path):
    """Eager torch (no exports): a row per variant and batch size, a report that fits the schema."""
    out = tmp_path / "bench.json"
    r = subprocess.run(CLI + ["bench", "--model", SPEC, "--temperature", str(TEMPERATURE), "--batch-sizes", "1,8",
                              "--backend", "torch", "--json", str(out)] + FAST,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    report.validate_report(rep)
    rows = {(x["variant"], x["batch"]): x for x in rep["results"] if "error" not in x}
    assert set(rows) == {(v, b) for v in VARIANTS for b in (1, 8)} and rep["encoder"] == "image"
    dense = _dense_gflops()
    for b in (1, 8):
        assert rows["dense", b]["gflops_per_instance"]["mean"] == pytest.approx(dense, rel=1e-9)
        own = rows["invariant", b]["gflops_own_per_instance"]
        assert own < dense and rows["packed", b]["gflops_own_per_instance"] == pytest.approx(own)
    # batch 8 prunes differently per image: the padded batch computes more than its images need
    assert rows["invariant", 8]["eff_over_own"] > 1.0 and rows["reference", 8]["eff_over_own"] > 1.0


def test_ort_bench_reuses_the_exported_graph(blip_exported, tmp_path):
    """onnxruntime next to torch on the same inputs: the same keep counts; the packed graph that
    `madtp-deploy export` wrote is taken from the cache, not exported again; packed counts its own tokens."""
    out, r = blip_exported
    assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache"
    cache.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(out / f"bt.image{suffix}", cache / f"exported.image{suffix}")
    cfg = BenchConfig(model=SPEC, temperature=TEMPERATURE, batch_sizes=[8], backends=["torch", "ort"],
                      variants=["dense", MODE], warmup_s=0.0, min_runs=2, pool=16, profile=False, cache=str(cache))
    rep = run_bench(cfg, log=lambda *_: None)
    report.validate_report(rep)
    assert sorted(p.name for p in cache.glob("*.image.onnx"))[-1] == "exported.image.onnx"
    assert len(list(cache.glob("*.image.onnx"))) == 2  # + the dense graph
    rows = {(x["backend"], x["variant"]): x for x in rep["results"]}
    assert set(rows) == {(b, v) for b in ("torch", "ort") for v in ("dense", MODE)}
    assert rows["torch", MODE]["kept_per_layer"] == rows["ort", MODE]["kept_per_layer"]
    assert rows["ort", MODE]["eff_over_own"] < 1.05 and "packed" not in rep["notes"]  # BLIP packs now


def test_static_variant_refused_in_one_line(tmp_path):
    r = subprocess.run(CLI + ["bench", "--model", SPEC, "--temperature", "3", "--variants", "dense,static"] + FAST,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--variants static" in r.stderr, r.stderr
