"""The bench's printed table and summary: numbers never cut, ratios below 1 never called faster."""

import io

from rich.console import Console

from madtp_deploy.benchmark import report as rep


def _report():
    row = {"backend": "ort", "variant": "packed", "batch": 32, "median_ms": 1234.5678, "p90_ms": 2345.6789,
           "throughput_per_s": 25.9219, "gflops_own_per_instance": 0.112233, "gflops_effective_per_instance": 0.115566,
           "eff_over_own": 1.0297, "floor_ms": 10.0, "over_floor": 123.4}
    return {"model": {"source": "shipped", "spec": {"name": "madtp-clip-tiny"}, "temperature": 1.2,
                      "variants": ["dense", "packed"]},
            "results": [dict(row, variant="dense", median_ms=411.5), row],
            "comparisons": [{"backend": "ort", "batch": 32, "variant": "packed", "speedup": 0.33,
                             "own_gflops_ratio": 2.0, "gflops_ratio": 1.9, "eff_over_own": 1.03,
                             "speedup_over_own_ratio": 0.165, "speedup_over_gflops_ratio": 0.17}]}


def test_numbers_are_never_cut_on_an_80_column_terminal():
    """Bug caught: `make demo`'s table printed to a pipe or an 80-column terminal cut its numbers ("0.11…")."""
    r = _report()
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=False)
    for t in rep.rich_tables(r, console.width):
        console.print(t)
    text = buf.getvalue()
    assert "…" not in text
    for row in rep._rows(r):
        for cell in row:
            assert cell in text, cell
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_slowdown_is_called_slower():
    """Bug caught: the summary said "0.33x faster than dense" where it meant 3.0x slower."""
    line = rep.summary_lines(_report())[0]
    assert "3.03x slower than dense" in line and "faster" not in line
    assert rep.speed_words(2.5) == "2.50x faster"
