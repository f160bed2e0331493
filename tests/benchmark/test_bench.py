"""The bench command: a small real run validates against the schema; bad input is one line, exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from madtp_deploy.benchmark import report
from madtp_deploy.benchmark.runner import BenchConfig, parse_backends, parse_batch_sizes, run_bench
from madtp_deploy.errors import UsageError

CLI = [sys.executable, "-m", "madtp_deploy.cli", "bench"]


VARIANTS = ("dense", "reference", "invariant", "packed", "static")


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bench-cache")
    cfg = BenchConfig(model="clip-tiny-test", temperature=3.0, batch_sizes=[1, 4], backends=["torch", "ort"],
                      variants=list(VARIANTS), capacity_quantile=0.9,
                      warmup_s=0.05, min_runs=3, pool=16, cache=str(cache))
    return run_bench(cfg, log=lambda *_: None), cfg


def test_report_validates_and_has_every_variant(small_report):
    small_report, _ = small_report
    report.validate_report(small_report)
    ok = [r for r in small_report["results"] if "error" not in r]
    assert {(r["backend"], r["variant"], r["batch"]) for r in ok} == {
        (b, v, n) for b in ("torch", "ort") for v in VARIANTS for n in (1, 4)}
    for r in ok:
        assert r["p99_ms"] >= r["median_ms"] > 0 and r["runs"] >= 3
        if r["variant"] == "dense":
            assert r["gflops_per_instance"]["min"] == r["gflops_per_instance"]["max"]
    # the same inputs, the same weights: torch and ORT see the same keep counts
    for n in (1, 4):
        for v in VARIANTS:
            t, o = [next(r for r in ok if r["backend"] == b and r["variant"] == v and r["batch"] == n)
                    for b in ("torch", "ort")]
            assert t["kept_per_layer"] == o["kept_per_layer"]
    assert len(small_report["comparisons"]) == 2 * 2 * 4
    for v in ("reference", "invariant", "packed", "static"):
        share = small_report["machinery_share_ort"][v]
        assert 0 < share["dtp"] < 1 and abs(sum(x for x in share.values() if isinstance(x, float)) - 1) < 1e-6
    assert small_report["machinery_share_ort"]["packed"]["layout"] > 0


def test_honest_ratios(small_report):
    """Own-token GFLOPs are the same instances' for every pruned variant; the padded batch computes
    more than its instances need, the packed one (nearly) only what they need."""
    small_report, _ = small_report
    ok = [r for r in small_report["results"] if "error" not in r and r["backend"] == "ort" and r["batch"] == 4]
    by = {r["variant"]: r for r in ok}
    own = {v: by[v]["gflops_own_per_instance"] for v in ("reference", "invariant", "packed", "static")}
    assert len({round(x, 9) for x in own.values()}) == 1
    assert by["invariant"]["eff_over_own"] > by["packed"]["eff_over_own"] >= 1.0
    assert by["reference"]["eff_over_own"] >= by["invariant"]["eff_over_own"]
    assert by["dense"]["eff_over_own"] == 1.0
    c = next(c for c in small_report["comparisons"] if c["backend"] == "ort" and c["batch"] == 4 and c["variant"] == "packed")
    assert c["speedup_vs_invariant"] > 0 and abs(c["speedup_over_own_ratio"] * c["own_gflops_ratio"] - c["speedup"]) < 1e-9
    g = small_report["graphs"]
    assert g["packed"]["nodes_per_pruned_layer"] > 0 and g["dense"]["nodes"] < g["invariant"]["nodes"]


def test_bench_reuses_cached_exports(small_report, tmp_path):
    """A second run with the same weights and code reads the artifacts the first one exported."""
    _, cfg = small_report
    before = {p: p.stat().st_mtime_ns for p in Path(cfg.cache).glob("*.onnx")}
    run_bench(BenchConfig(**{**cfg.__dict__, "batch_sizes": [1], "backends": ["ort"], "profile": False,
                             "variants": ["dense", "packed"]}), log=lambda *_: None)
    after = {p: p.stat().st_mtime_ns for p in Path(cfg.cache).glob("*.onnx")}
    assert before == after and len(before) == len(VARIANTS)


def test_schema_rejects_a_broken_report(small_report):
    import jsonschema

    small_report, _ = small_report
    bad = json.loads(json.dumps(small_report))
    bad["results"][0].pop("median_ms", None)
    bad["results"][0].pop("error", None)
    with pytest.raises(jsonschema.ValidationError):
        report.validate_report(bad)


def test_markdown_and_plot(small_report, tmp_path):
    small_report, _ = small_report
    md = report.markdown(small_report)
    assert "| ort | 4 |" in md and "speedup" in md
    report.plot(small_report, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("text", ["1,,x", "0", "", "-3"])
def test_bad_batch_sizes(text):
    with pytest.raises(UsageError):
        parse_batch_sizes(text)


def test_bad_backend():
    with pytest.raises(UsageError, match="unknown backend"):
        parse_backends("ort,tvm")


@pytest.mark.parametrize("args, expect", [
    (["--batch-sizes", "1,,x"], "--batch-sizes"),
    (["--batch-sizes", "0"], "--batch-sizes"),
    (["--backend", "nope"], "unknown backend"),
    (["--variants", "packed"], "--variants"),
    (["--variants", "dense,padded"], "--variants"),
    (["--onnx", "/nonexistent/x.onnx"], "no such ONNX file"),
])
def test_cli_bad_input(args, expect):
    r = subprocess.run(CLI + ["--model", "clip-tiny-test", "--temperature", "3"] + args,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and expect in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_bench_runs_on_a_blip_nlvr_model(tmp_path):
    """Bugs caught: BLIP NLVR2 models refused by the bench, or reported without their own-token
    GFLOPs (the padded batch's count must be at least the instances' own); the packed variant
    dropped, or its batches counted as padded (packed computes nearly its own tokens)."""
    cfg = BenchConfig(model="blip-nlvr-tiny", temperature=5.0, batch_sizes=[1, 8], backends=["torch"],
                      warmup_s=0.0, min_runs=2, pool=8, cache=str(tmp_path))
    r = run_bench(cfg, log=lambda *_: None)
    report.validate_report(r)
    variants = ("dense", "reference", "invariant", "packed")
    assert r["encoder"] == "nlvr" and tuple(r["model"]["variants"]) == variants
    ok = {(x["variant"], x["batch"]): x for x in r["results"]}
    assert set(ok) == {(v, b) for v in variants for b in (1, 8)}
    assert ok[("invariant", 1)]["eff_over_own"] == 1.0
    assert ok[("packed", 1)]["eff_over_own"] == pytest.approx(1.0, abs=0.005)  # + MAG on the CLS rows
    assert 1.0 < ok[("packed", 8)]["eff_over_own"] < ok[("invariant", 8)]["eff_over_own"]
    assert ok[("dense", 8)]["gflops_own_per_instance"] > ok[("invariant", 8)]["gflops_own_per_instance"]
