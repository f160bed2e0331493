"""The bench command: a small real run validates against the schema; bad input is one line, exit 2."""

import json
import subprocess
import sys

import pytest

from madtp_deploy.bench import report
from madtp_deploy.bench.runner import BenchConfig, parse_backends, parse_batch_sizes, run_bench
from madtp_deploy.errors import UsageError

CLI = [sys.executable, "-m", "madtp_deploy.cli", "bench"]


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bench-cache")
    cfg = BenchConfig(model="clip-tiny-test", temperature=3.0, batch_sizes=[1, 4], backends=["torch", "ort"],
                      warmup_s=0.05, min_runs=3, pool=16, cache=str(cache))
    return run_bench(cfg, log=lambda *_: None)


def test_report_validates_and_has_both_variants(small_report):
    report.validate_report(small_report)
    ok = [r for r in small_report["results"] if "error" not in r]
    assert {(r["backend"], r["variant"], r["batch"]) for r in ok} == {
        (b, v, n) for b in ("torch", "ort") for v in ("dense", "pruned") for n in (1, 4)}
    for r in ok:
        assert r["p99_ms"] >= r["median_ms"] > 0 and r["runs"] >= 3
        if r["variant"] == "dense":
            assert r["gflops_per_instance"]["min"] == r["gflops_per_instance"]["max"]
    # the same inputs, the same weights: torch and ORT see the same keep counts
    for n in (1, 4):
        t, o = [next(r for r in ok if r["backend"] == b and r["variant"] == "pruned" and r["batch"] == n)
                for b in ("torch", "ort")]
        assert t["kept_per_layer"] == o["kept_per_layer"]
    assert len(small_report["comparisons"]) == 4
    share = small_report["machinery_share_ort"]
    assert 0 < share["dtp"] < 1 and abs(sum(v for k, v in share.items() if isinstance(v, float)) - 1) < 1e-6


def test_schema_rejects_a_broken_report(small_report):
    import jsonschema
    bad = json.loads(json.dumps(small_report))
    bad["results"][0].pop("median_ms", None)
    bad["results"][0].pop("error", None)
    with pytest.raises(jsonschema.ValidationError):
        report.validate_report(bad)


def test_markdown_and_plot(small_report, tmp_path):
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
    (["--onnx", "/nonexistent/x.onnx"], "no such ONNX file"),
])
def test_cli_bad_input(args, expect):
    r = subprocess.run(CLI + ["--model", "clip-tiny-test", "--temperature", "3"] + args,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and expect in r.stderr and r.stderr.count("\n") == 1, r.stderr
