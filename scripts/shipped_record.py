"""Write the sidecars of the shipped checkpoints (madtp_deploy/assets/madtp-clip-deep{,-dense}.json) after
`make shipped-model`: what each file is, the recipe that made it and what it measures on the test split.

  .venv/bin/python scripts/shipped_record.py --wall dense=SECONDS --wall compression=SECONDS

Metrics: `madtp-deploy eval` (invariant mode, batch 64) on data/scenes's test split for the shipped model, its
dense start and, when runs/deep/p0 exists (`make shipped-curve`), the `--reduce 0` control trained as long.
tests/test_shipped.py checks a fresh evaluation against these numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import madtp_deploy
from madtp_deploy.api import SHIPPED_NAMES
from madtp_deploy.data import dataset
from madtp_deploy.evaluate import evaluate
from madtp_deploy.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
EVAL = "madtp-deploy eval --model {model} --data data/scenes --split test --batch-size 64 --mode invariant"


def recipe(target: str) -> list[str]:
    """The Makefile's recipe lines for `target`, variables expanded (the record quotes what ran)."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*:=\s*(.+)$", text, re.M))
    body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M)
    assert body, f"no {target} target in the Makefile"
    lines = []
    for line in body.group(1).splitlines():
        line = line.strip()
        for _ in range(3):  # nested variables
            line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
        lines.append(line.replace("$(VENV)/bin/", "").replace(".venv/bin/", ""))
    return lines


def measure(ckpt: Path, data: Path, split) -> tuple[float, dict]:
    m = madtp_deploy.load(ckpt, mode="invariant")
    r = evaluate(m, split, dataset.tokenizer_for(data, m.spec), batch_size=64)
    keep = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "gflops_per_pair", "gflops_dense_per_pair",
            "gflops_reduction", "kept_image_per_layer", "kept_text_per_layer")
    return m.temperature, {k: r[k] for k in keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / "data" / "scenes"))
    ap.add_argument("--wall", action="append", default=[], help="dense=SECONDS, compression=SECONDS (measured)")
    ap.add_argument("--wall-note", default="", help="what else the machine ran meanwhile")
    a = ap.parse_args()
    data = Path(a.data)
    wall: dict = {k: float(v) for k, v in (w.split("=", 1) for w in a.wall)}
    if a.wall_note:
        wall["note"] = a.wall_note
    steps = recipe("shipped-model")
    common = {"trained_by": "this project's own `make shipped-model` (madtp-deploy make-data, train), from nothing, "
                            "on the generated scenes task; the 2-core development machine, two threads",
              "format": "MADTP checkpoint: {'model': state_dict, 'epoch', 'temperature', 'spec'}",
              "recipe": steps, "seed": 0}
    shipped, dense = SHIPPED_NAMES["shipped"], SHIPPED_NAMES["shipped-dense"]
    split = dataset.load(data, "test")  # read once, evaluated three times
    t_dense, m_dense = measure(dense, data, split)
    t, m = measure(shipped, data, split)
    record = {"file": shipped.name, **common, "sha256": sha256(shipped), "temperature": t,
              "training_wall_clock_s": wall, "eval_command": EVAL.format(model="shipped"), "metrics": m,
              "dense_start_metrics": m_dense}
    control, study = ROOT / "runs" / "deep" / "p0" / "madtp.pt", ROOT / "docs" / "results-deep.json"
    fair = ("the dense start trained as long as the compression run with --reduce 0 (`make shipped-curve`): "
            "the fair baseline")
    if control.is_file():
        record["control_metrics"], record["control"] = measure(control, data, split)[1], fair
    elif study.is_file():  # the curve's run folders are gone: its record measured the control the same way
        run = next((r for r in json.loads(study.read_text())["runs"] if r["run"] == "0"), None)
        if run:
            record["control_metrics"] = {k: run["invariant"][k] for k in m}
            record["control"] = f"{fair}; measured by scripts/study.py (docs/results-deep.json, run 0, invariant)"
    write_text_atomic(shipped.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    write_text_atomic(dense.with_suffix(".json"), json.dumps(
        {"file": dense.name, **common, "role": "the dense model the shipped one was compressed from (peers, curve)",
         "sha256": sha256(dense), "temperature": t_dense, "eval_command": EVAL.format(model="shipped-dense"),
         "metrics": m_dense}, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    main()
