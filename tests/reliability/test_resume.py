"""Exact resume: a run stopped mid-epoch and resumed ends with the uninterrupted run's weights, bit for bit."""

import torch

from madtp_deploy.train import clip, loop
from madtp_deploy.train.loop import TrainConfig

TINY = "clip-tiny-test"


def _cfg(data, out, **kw):
    # compression with a short control interval: the temperature controller moves during the run.
    # 32 captions / batch 8 = 4 steps per epoch, 2 epochs.
    return TrainConfig(str(data), str(out), init=TINY, reduce=0.15, epochs=2, batch_size=8, lr=1e-3,
                       control_every=2, **kw)


def test_resume_from_mid_epoch_is_bit_exact(small_scenes, tmp_path):
    straight = tmp_path / "straight"
    r_full = loop.train(_cfg(small_scenes, straight), clip.HOOKS, log=lambda *_: None)
    full = torch.load(straight / "last.pt", weights_only=False)
    out = tmp_path / "run"
    loop.train(_cfg(small_scenes, out, max_steps=6), clip.HOOKS, log=lambda *_: None)  # stops in the middle of epoch 1
    mid = torch.load(out / "last.pt", weights_only=False)
    assert (mid["step"], mid["epoch"], mid["batch"]) == (6, 1, 2), "the checkpoint is mid-epoch"
    torch.manual_seed(1234)  # the resumed run must not depend on the state of the process
    r = loop.train(_cfg(small_scenes, out, resume=True), clip.HOOKS, log=lambda *_: None)
    end = torch.load(out / "last.pt", weights_only=False)
    assert end["step"] == full["step"] == 8
    for k, v in full["model"].items():
        assert torch.equal(end["model"][k], v), f"{k} differs after resume"
    assert end["temperature"] == full["temperature"] and r["temperature"] == r_full["temperature"]
    assert [h["loss"] for h in r["history"]] == [h["loss"] for h in r_full["history"]]
    opt_a, opt_b = end["optimizer"]["state"], full["optimizer"]["state"]
    assert all(torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"]) for i in opt_b)
    assert len({h["temperature"] for h in r_full["history"]}) > 1, "the controller moved during the run"
