"""`bench --variants dense,packed,packed-int8,...` (issue 23): precisions side by side in one run, the INT8
graph calibrated for the bench's model (and cached), timed on onnxruntime only, eff/own from its own decisions."""

import json
import shutil
from pathlib import Path

import onnx
import pytest

from madtp_deploy.benchmark.runner import INT8_SAMPLES, BenchConfig, _load_variants, parse_variants, run_bench
from madtp_deploy.errors import UsageError

VARIANTS = ["dense", "packed", "invariant-int8", "packed-int8"]


@pytest.fixture(scope="module")
def int8_report(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bench-int8")
    cfg = BenchConfig(model="clip-tiny-test", temperature=3.0, batch_sizes=[4], backends=["ort"],
                      variants=VARIANTS, warmup_s=0.0, min_runs=2, pool=8, profile=False, cache=str(cache))
    return run_bench(cfg, log=lambda *_: None), cache


def test_int8_variants_run_beside_fp32(int8_report):
    """Bugs caught: an INT8 variant timed as the fp32 eager model on torch; the INT8 row missing or
    timing the fp32 graph (no Q/DQ in the file it ran)."""
    r, cache = int8_report
    rows = {(x["backend"], x["variant"]): x for x in r["results"]}
    for v in ("invariant-int8", "packed-int8"):
        assert "error" not in rows[("ort", v)] and rows[("ort", v)]["median_ms"] > 0
    files = sorted(Path(cache).glob("*.int8-*.onnx"))
    assert len(files) == 2
    for f in files:
        side = json.loads(f.with_suffix(".json").read_text())
        assert side["quantization"]["pruning_path"] == "float" and side["calibration"]["samples"] == INT8_SAMPLES
        assert side["model"]["mode"] in ("packed", "invariant")
        ops = {n.op_type for n in onnx.load(str(f), load_external_data=False).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert r["graphs"]["packed-int8"]["nodes"] != r["graphs"]["packed"]["nodes"]  # not the fp32 file


def test_int8_variants_refuse_torch(tmp_path):
    """Bug caught: an INT8 variant timed as the fp32 eager model on --backend torch."""
    cfg = BenchConfig(model="clip-tiny-test", temperature=3.0, batch_sizes=[2], backends=["torch"],
                      variants=["dense", "packed-int8"], warmup_s=0.0, min_runs=1, pool=2, profile=False,
                      cache=str(tmp_path))
    rows = {x["variant"]: x for x in run_bench(cfg, log=lambda *_: None)["results"]}
    assert "ort only" in rows["packed-int8"]["error"] and "error" not in rows["dense"]


def test_int8_eff_over_own_from_its_own_decisions(int8_report):
    """Bugs caught: the packed INT8 row's effective GFLOPs computed as padded (no '-int8' stripped),
    its own GFLOPs taken from fp32's decisions rather than its own kept counts."""
    r, _ = int8_report
    ort = {x["variant"]: x for x in r["results"] if x["backend"] == "ort"}
    p8, i8 = ort["packed-int8"], ort["invariant-int8"]
    assert 1.0 <= p8["eff_over_own"] <= 1.10 and p8["eff_over_own"] < i8["eff_over_own"]
    assert p8["eff_over_own"] == pytest.approx(ort["packed"]["eff_over_own"], rel=0.05)
    for x in (p8, i8):
        assert x["gflops_own_per_instance"] == pytest.approx(x["gflops_per_instance"]["mean"], rel=1e-9)
    c = {x["variant"]: x for x in r["comparisons"] if x["backend"] == "ort"}
    assert set(c) == {"packed", "invariant-int8", "packed-int8"}


def test_bench_onnx_on_a_quantized_file_is_the_int8_variant(int8_report, tmp_path):
    """Bug caught: `bench --onnx <int8 file>` labelled (and compared) as the fp32 packed graph."""
    _, cache = int8_report
    f = next(p for p in Path(cache).glob("*.int8-*.onnx")
             if json.loads(p.with_suffix(".json").read_text())["model"]["mode"] == "packed")
    side = json.loads(f.with_suffix(".json").read_text())
    side["model"]["source"] = "clip-tiny-test"  # the bench's cache records source "bench"
    g = tmp_path / f.name
    shutil.copyfile(f, g)
    g.with_suffix(".json").write_text(json.dumps(side))
    models, given, _ = _load_variants(BenchConfig(onnx=str(g), cache=str(cache)), log=lambda *_: None)
    assert list(models) == ["dense", "packed-int8"] and given == {"packed-int8": g}
    assert models["packed-int8"].mode == "packed"


def test_parse_int8_variants():
    assert parse_variants("dense,packed,packed-int8,static-int8") == ["dense", "packed", "packed-int8", "static-int8"]
    with pytest.raises(UsageError, match="packed-int4"):
        parse_variants("dense,packed-int4")
