"""The one training loop: every family resumes exactly, and a run is a function of its config (seeded
order, never the global RNG)."""

import random

import numpy as np
import pytest
import torch

from madtp_deploy.train import blip_nlvr, blip_retrieval, clip, loop

# family -> (hooks, --init, data fixture, batches per epoch at batch 8)
FAMILIES = {"clip": (clip.HOOKS, "clip-tiny-test", "tiny_scenes", 4),
            "blip-retrieval": (blip_retrieval.HOOKS, "blip-retrieval-tiny", "tiny_scenes", 4),
            "blip-nlvr": (blip_nlvr.HOOKS, "blip-nlvr-tiny", "tiny_nlvr", 2)}
METRICS = {"clip": set(), "blip-retrieval": {"val_recall_itc"}, "blip-nlvr": {"val_accuracy"}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the tiny models' many small ops run faster on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(data, out, init, **kw):
    # compression with the controller after every step: the temperature moves during the run
    args = dict(init=init, reduce=0.3, epochs=2, batch_size=8, lr=1e-3, control_every=1, mode="invariant")
    return loop.TrainConfig(str(data), str(out), **{**args, **kw})


class Progress:
    """A progress bar that counts the steps run and, with `draw`, draws from every global RNG on each
    update (as any library in the process may)."""

    def __init__(self, draw: bool = False):
        self.draw, self.steps = draw, 0

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        self.steps += 1
        if self.draw:
            torch.rand(3)
            random.random()
            np.random.rand()


def _last(out):
    return torch.load(out / "last.pt", weights_only=False)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_resume_mid_epoch_is_bit_exact_and_order_ignores_the_global_rng(family, request, tmp_path):
    """Bugs caught: a family that does not resume (NLVR2's `--resume` was ignored), a resumed run that
    replays or skips batches, data order or hard negatives drawn from the global RNG (the straight run
    below has its global RNG drawn from on every step; the interrupted one does not), controller state
    lost at resume."""
    hooks, init, fixture, per_epoch = FAMILIES[family]
    data = request.getfixturevalue(fixture)
    straight, out = tmp_path / "straight", tmp_path / "run"
    r_full = loop.train(_cfg(data, straight, init), hooks, log=lambda *_: None, progress=Progress(draw=True))
    full = _last(straight)
    stop = per_epoch + 1  # one batch into the second epoch
    loop.train(_cfg(data, out, init, max_steps=stop), hooks, log=lambda *_: None)
    mid = _last(out)
    assert (mid["step"], mid["epoch"], mid["batch"]) == (stop, 1, 1), "the checkpoint is mid-epoch"
    torch.manual_seed(1234)
    resumed = Progress()
    r = loop.train(_cfg(data, out, init, resume=True), hooks, log=lambda *_: None, progress=resumed)
    end = _last(out)
    assert resumed.steps == 2 * per_epoch - stop, "the resumed run continues, it does not start over"
    assert end["step"] == full["step"] == 2 * per_epoch
    for k, v in full["model"].items():
        assert torch.equal(end["model"][k], v), f"{k} differs after resume"
    opt_a, opt_b = end["optimizer"]["state"], full["optimizer"]["state"]
    assert all(torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"]) for i in opt_b)
    assert [h["loss"] for h in r["history"]] == [h["loss"] for h in r_full["history"]]
    assert end["temperature"] == full["temperature"] and r["temperature"] == r_full["temperature"]
    assert len({h["temperature"] for h in r_full["history"]}) > 1, "the controller moved during the run"
    assert METRICS[family] <= set(r) and r["gflops_current"] < r["gflops_dense"]
    assert (out / "madtp.pt").is_file() and torch.load(out / "madtp.pt", weights_only=False)["epoch"] == 1


def test_the_seed_decides_the_order(tiny_scenes, tmp_path):
    """Bug caught: an order (or step generator) that ignores --seed: two seeds train alike."""
    hooks, init, _, per_epoch = FAMILIES["clip"]
    weights = []
    for seed in (0, 0, 1):
        out = tmp_path / f"s{len(weights)}"
        loop.train(_cfg(tiny_scenes, out, init, seed=seed, max_steps=per_epoch + 1, reduce=0.0), hooks,
                   log=lambda *_: None)
        weights.append(_last(out)["model"])
    same = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    differ = any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert same and differ


def test_resume_of_another_family_s_checkpoint_is_one_clear_error(tiny_scenes, tmp_path):
    """Bug caught: last.pt of a CLIP run silently (or with a traceback) resumed into a BLIP model."""
    from madtp_deploy.errors import CheckpointError

    loop.train(_cfg(tiny_scenes, tmp_path, "clip-tiny-test", max_steps=1, reduce=0.0), clip.HOOKS,
               log=lambda *_: None)
    with pytest.raises(CheckpointError, match=r"last.pt: does not fit this run .*fix: resume with the same --init"):
        loop.train(_cfg(tiny_scenes, tmp_path, "blip-retrieval-tiny", resume=True), blip_retrieval.HOOKS,
                   log=lambda *_: None)


def test_warmup_rises_linearly_then_the_cosine_runs_over_the_remaining_steps():
    """Bug caught: the cosine counted from step 0 under a warm-up (it would start below lr and never reach
    min_lr at the last step), or the warm-up starting at lr (no warm-up at all)."""
    lr, total, warm = 1e-3, 100, 10
    ramp = [loop.cosine_lr(lr, 0.0, s, total, warm) for s in range(warm)]
    assert ramp[0] == pytest.approx(lr / warm) and all(b > a for a, b in zip(ramp, ramp[1:]))
    assert loop.cosine_lr(lr, 0.0, warm, total, warm) == pytest.approx(lr)
    assert loop.cosine_lr(lr, 1e-5, total, total, warm) == pytest.approx(1e-5)
    assert loop.cosine_lr(lr, 0.0, 55, total, warm) == pytest.approx(lr / 2)
    assert loop.cosine_lr(lr, 0.0, 50, total) == pytest.approx(lr / 2)  # no warm-up: the plain cosine


def test_pretrained_initialises_nlvr_and_is_refused_elsewhere(tiny_scenes, tiny_nlvr, tmp_path):
    """`--pretrained`: BLIP NLVR2 fine-tunes from a BLIP retrieval run on scenes (the two generated tasks share
    one vocabulary, so the statements' words keep their pre-trained ids); a CLIP run refuses it in one line.
    Bugs caught: the option ignored (NLVR2 starts from random weights), the vocabularies diverging."""
    from madtp_deploy.errors import UsageError

    assert (tiny_scenes / "vocab.txt").read_text() == (tiny_nlvr / "vocab.txt").read_text()
    pre = tmp_path / "pre"
    loop.train(_cfg(tiny_scenes, pre, "blip-retrieval-tiny", max_steps=1, reduce=0.0), blip_retrieval.HOOKS,
               log=lambda *_: None)
    lines: list[str] = []
    loop.train(_cfg(tiny_nlvr, tmp_path / "nlvr", "blip-nlvr-tiny", max_steps=1, reduce=0.0,
                    pretrained=str(pre / "madtp.pt")), blip_nlvr.HOOKS, log=lines.append)
    assert any(s.startswith("initialised ") and "; 6 new (merge layers, head)" in s for s in lines), lines
    with pytest.raises(UsageError, match="--pretrained: CLIP trains from --init alone"):
        loop.train(_cfg(tiny_scenes, tmp_path / "clip", "clip-tiny-test", max_steps=1, reduce=0.0,
                        pretrained=str(pre / "madtp.pt")), clip.HOOKS, log=lambda *_: None)
