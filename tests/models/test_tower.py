"""The one pruned-tower driver (models/tower.py): every tower runs it, and it computes what the three
copied loops it replaced computed.

`tower_golden.safetensors` holds the outputs of the code before the driver (the three loops), on the inputs
below, in every mode. Regenerate it only for a deliberate change of the answers:
`.venv/bin/python -m tests.models.test_tower` (it prints what it wrote).
"""

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import madtp_deploy
from madtp_deploy import ablations
from madtp_deploy.models import tower

from ..conftest import TINY, tiny_inputs
from .test_blip import blip_inputs

NLVR, RET = "blip-nlvr-tiny", "blip-retrieval-tiny"
GOLDEN = Path(__file__).parent / "data" / "tower_golden.safetensors"
MODES = ("reference", "invariant", "packed")


def _flat(out: dict, prefix: str, obj) -> None:
    if isinstance(obj, torch.Tensor):  # MAG features: 8 of their dimensions keep the file small
        out[prefix] = (obj[..., :8] if "align" in prefix else obj).detach().contiguous()
    elif obj is not None:
        for f in dataclasses.fields(obj):
            _flat(out, f"{prefix}.{f.name}", getattr(obj, f.name))


@torch.no_grad()
def outputs() -> dict:
    """Every tower in every mode with pruning on: CLIP image / text (EOT tracking, MAG features, fixed
    capacities, an ablation's score_fn), BLIP NLVR2 (the pair rule, twin cross-attention) and
    retrieval (ITC towers, ITM cross-attention, MAG features)."""
    out = {}
    px, ids = tiny_inputs(6, seed=2)
    mask = (ids != 0).long()
    a, b, bids, bmask = blip_inputs(5, seed=5)
    for mode in MODES:
        m = madtp_deploy.load(TINY, mode=mode, temperature=3.0)
        _flat(out, f"clip/{mode}/image", m.encode_image(px, want_align=True))
        _flat(out, f"clip/{mode}/text", m.encode_text(ids, mask, want_align=True))
        if mode != "reference":
            m.capacity = {"image": (5, 5), "text": (4, 4)}
            _flat(out, f"clip/{mode}/image_capacity", m.encode_image(px))
            _flat(out, f"clip/{mode}/text_capacity", m.encode_text(ids, mask))
            m.capacity = None
        m.score_fn = ablations.sa_only(2.0)
        _flat(out, f"clip/{mode}/image_sa_only", m.encode_image(px))
        n = madtp_deploy.load(NLVR, mode=mode, temperature=3.0)
        _flat(out, f"nlvr/{mode}", n.nlvr(a, b, bids, bmask, want_align=True))
        r = madtp_deploy.load(RET, mode=mode, temperature=3.0)
        _flat(out, f"retrieval/{mode}/image", r.encode_image(a, want_align=True))
        _flat(out, f"retrieval/{mode}/text", r.encode_text(bids, bmask, want_align=True))
        _flat(out, f"retrieval/{mode}/match", r.match(a, bids, bmask))
    return out


def test_outputs_equal_those_of_the_loops_the_driver_replaced():
    """Bugs caught: any change of the driver's order of operations that moves a number (MAG before or
    after the relayout, the pair rule, the capacity per layer, the final norm on rows or slots...)."""
    want, got = load_file(GOLDEN), outputs()
    assert got.keys() == want.keys()
    assert len({tuple(v.flatten().tolist()) for k, v in want.items() if "kept" in k}) > 10, "inputs prune variously"
    for k in want:
        if want[k].dtype in (torch.int64, torch.bool):
            assert torch.equal(got[k], want[k]), k
        else:  # bit-equal on the machine that wrote the file; other CPUs may round differently
            torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=0, msg=k)


def test_every_tower_runs_the_driver(monkeypatch):
    """Bug caught: a tower that prunes in a loop of its own (a copy that drifts from the others)."""
    calls = []

    def spy(x, *args, **kwargs):
        calls.append(x.shape[-1])
        return real(x, *args, **kwargs)

    real = tower.prune_step
    monkeypatch.setattr(tower, "prune_step", spy)
    px, ids = tiny_inputs(2)
    a, b, bids, bmask = blip_inputs(2)
    clip = madtp_deploy.load(TINY, mode="packed", temperature=3.0)
    nlvr = madtp_deploy.load(NLVR, mode="invariant", temperature=3.0)
    ret = madtp_deploy.load(RET, mode="reference", temperature=3.0)
    runs = {"clip image": lambda: clip.encode_image(px), "clip text": lambda: clip.encode_text(ids),
            "blip vit": lambda: ret.encode_image(a), "blip text": lambda: ret.encode_text(bids, bmask),
            "blip vit + fusion": lambda: nlvr.nlvr(a, b, bids, bmask)}
    layers = {"clip image": 2, "clip text": 2, "blip vit": 2, "blip text": 2, "blip vit + fusion": 4}
    with torch.no_grad():
        for name, run in runs.items():
            calls.clear()
            run()
            assert len(calls) == layers[name], f"{name}: {len(calls)} prune steps through the driver"


def _regenerate() -> None:
    GOLDEN.parent.mkdir(exist_ok=True)
    out = outputs()
    save_file(out, GOLDEN)
    print(f"wrote {GOLDEN}: {len(out)} tensors from {madtp_deploy.__file__}")


if __name__ == "__main__":
    _regenerate()
