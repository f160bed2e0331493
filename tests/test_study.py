"""scripts/study.py's comparison table: each study's reduce levels against its own control, in named columns."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("study", Path(__file__).parents[1] / "scripts" / "study.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def _record(control, runs, tokens):
    """A study record: a dense run, a --reduce 0 control and compressed runs {p: (removed, txt, img)}."""
    def row(name, removed, txt, img):
        return {"run": name, "invariant": {"gflops_reduction": removed, "txt_r1": txt, "img_r1": img,
                                           "kept_image_per_layer": [tokens] * 8}}
    rows = [row("dense", 0.0, 20.0, 20.0), row("0", 0.0, *control)]
    return {"task": "clip", "runs": rows + [row(str(p), *v) for p, v in runs.items()]}


def test_each_study_is_measured_against_its_own_control_under_the_given_heads():
    before = _record((30.0, 26.8), {0.7: (0.706, 23.6, 25.3), 0.5: (0.5, 29.0, 26.0)}, 257)
    after = _record((31.0, 28.0), {0.7: (0.70, 30.0, 27.5)}, 257)
    lines = study._depth_table(after, ("docs/results-p4.json", before), ["32-epoch start", "44-epoch start"])
    assert lines[1].startswith("The same `--reduce`") and "docs/results-p4.json" in lines[1]
    assert lines[3] == ("| --reduce | removed, 32-epoch start | removed, 44-epoch start | Δ txt / img R@1, "
                        "32-epoch start | Δ txt / img R@1, 44-epoch start |")
    # only the level both ran; the given study's deltas first, this one's second
    assert lines[5:] == ["| 0.7 | 70.6% | 70.0% | -6.4 / -1.5 | -1.0 / -0.5 |"]


def test_without_heads_the_columns_name_each_geometry():
    deep = _record((26.0, 28.2), {0.7: (0.707, 23.2, 24.2)}, 65)
    p4 = _record((30.0, 26.8), {0.7: (0.706, 23.6, 25.3)}, 257)
    lines = study._depth_table(p4, ("docs/results-deep.json", deep))
    assert lines[1].startswith("What the geometry buys")
    assert "removed, 8 + 8 layers, 65 image tokens | removed, 8 + 8 layers, 257 image tokens" in lines[3]
