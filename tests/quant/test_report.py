"""The calibration report's rendering (madtp_deploy.quant.report): verdicts computed from the record,
doc sections replaced between their markers only, and the compound (pruning x INT8) bench table."""

import pytest

from madtp_deploy.quant import report


def _keep(share):
    return {"equal_share": share, "instances_all_equal": share, "mean_abs_diff": 1 - share}


def _recipe(txt, img, keep_image, keep_text):
    return {"what": "x", "txt_r1": txt, "img_r1": img, "gflops_pair": 0.07, "keep_image": _keep(keep_image),
            "keep_text": _keep(keep_text), "embed_cosine_image": 0.999}


def _record(txt, img, keep_image, keep_text):
    return {"shipped": {"recipes": {"fp32": _recipe(20.0, 22.0, 1.0, 1.0), "int8": _recipe(txt, img, keep_image, keep_text)}}}


@pytest.mark.parametrize("keep_image, keep_text, want", [
    (0.97, 0.99, ["text **met**", "image **met**"]),
    (0.90, 0.99, ["text **met**", "image **missed** by 5.0 points"]),
    (0.97, 0.80, ["text **missed** by 15.0 points", "image **met**"]),
])
def test_keep_verdicts_come_from_the_record(keep_image, keep_text, want):
    """Bug caught: the verdict written as text ("text met; image missed") whatever was measured."""
    md = "\n".join(report.targets_md(_record(19.5, 21.6, keep_image, keep_text)))
    row = next(ln for ln in md.splitlines() if ln.startswith("| >= 95%"))
    assert all(w in row for w in want), row


def test_recall_verdict_both_directions():
    """Bug caught: only one retrieval direction checked against the 1-point budget."""
    ok = "\n".join(report.targets_md(_record(19.5, 21.6, 0.97, 0.99)))
    assert "txt -0.5, img -0.4 points | **met**" in ok
    bad = "\n".join(report.targets_md(_record(19.5, 20.5, 0.97, 0.99)))
    assert "**missed** by 0.5" in bad


def test_write_section_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "DOC.md"
    doc.write_text("# head\n\n<!-- calibration:begin -->\nold\n<!-- calibration:end -->\n\n## after\nkept\n")
    report.write_section(doc, "new")
    assert doc.read_text() == "# head\n\n<!-- calibration:begin -->\nnew\n<!-- calibration:end -->\n\n## after\nkept\n"
    fresh = tmp_path / "FRESH.md"
    fresh.write_text("# only\n")
    report.write_section(fresh, "body")
    assert fresh.read_text() == "# only\n\n<!-- calibration:begin -->\nbody\n<!-- calibration:end -->\n"


def _row(variant, batch, ms, eff):
    return {"backend": "ort", "variant": variant, "batch": batch, "median_ms": ms, "eff_over_own": eff}


def test_compound_table_ratios():
    """Bugs caught: speedups taken against the wrong row (another batch's dense, the INT8 row
    itself), the packed INT8 / packed fp32 ratio inverted."""
    bench = {"model": {"variants": ["dense", "packed", "packed-int8"]}, "results": [
        _row("dense", 8, 100.0, 1.0), _row("packed", 8, 50.0, 1.03), _row("packed-int8", 8, 25.0, 1.02),
        _row("dense", 32, 400.0, 1.0), _row("packed", 32, 200.0, 1.02), _row("packed-int8", 32, 160.0, 1.01),
        {"backend": "torch", "variant": "packed-int8", "error": "ort only"}]}
    lines = report.compound_md(bench).splitlines()
    assert "packed INT8: ms, x dense, eff/own" in lines[0] and lines[0].endswith("packed INT8 / packed fp32 |")
    assert lines[2] == "| 8 | 100.0, 1.00 | 50.0, 2.00x, 1.03 | 25.0, 4.00x, 1.02 | 2.00x |"
    assert lines[3] == "| 32 | 400.0, 1.00 | 200.0, 2.00x, 1.02 | 160.0, 2.50x, 1.01 | 1.25x |"
