"""The peers as bench variants: matched to the pruned model's own GFLOPs on the bench images, rows in
the same record, their GFLOPs columns their own (static: own = effective)."""

import pytest

import madtp_deploy
from madtp_deploy import peers
from madtp_deploy.benchmark.runner import BenchConfig, bench_images, parse_variants, run_bench
from madtp_deploy.errors import UsageError


def test_bench_puts_the_peers_beside_packed(tmp_path):
    lines = []
    cfg = BenchConfig(model="clip-tiny-test", temperature=3.0, batch_sizes=[1, 4], backends=["torch"],
                      variants=["dense", "packed", "tome", "topk", "lowres"], warmup_s=0.0, min_runs=2, pool=8,
                      profile=False, cache=str(tmp_path))
    r = run_bench(cfg, log=lines.append)
    # report.validate_report(r): once benchmark/schema.json's variant enum lists tome, topk, lowres
    rows = {(x["variant"], x["batch"]): x for x in r["results"]}
    assert len(rows) == 10 and not any("error" in x for x in r["results"])
    # the target: the pruned model's mean own GFLOPs over the bench's image pool
    m = madtp_deploy.load("clip-tiny-test", temperature=3.0)
    target = float(peers.own_image_gflops(m, bench_images(m, None, 8)).mean())
    for b in (1, 4):
        for v in ("tome", "topk"):  # fine knobs: within 2%
            row = rows[v, b]
            assert row["gflops_own_per_instance"] == row["gflops_effective_per_instance"]
            assert abs(row["gflops_own_per_instance"] / target - 1) <= 0.02, (v, row, target)
        assert rows["lowres", b]["gflops_own_per_instance"] < rows["dense", b]["gflops_own_per_instance"]
    assert sum(line.startswith("peer ") for line in lines) == 3
    assert {c["variant"] for c in r["comparisons"]} == {"packed", "tome", "topk", "lowres"}


def test_peers_need_a_madtp_variant_to_match():
    assert parse_variants("dense,packed,tome") == ["dense", "packed", "tome"]
    with pytest.raises(UsageError):
        parse_variants("dense,tome")
