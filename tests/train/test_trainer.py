"""A few steps of training: loss falls, temperature steers GFLOPs, checkpoints are atomic."""

import pytest
import torch

import madtp_deploy
from madtp_deploy.train import clip, control, loop
from madtp_deploy.train.loop import TrainConfig


def _train(cfg, **kw):
    return loop.train(cfg, clip.HOOKS, **kw)


def test_controller_steps_toward_the_target():
    assert control.next_temperature(1.0, 100, 50, 100) == 1.5     # too many GFLOPs: prune more
    assert control.next_temperature(1.0, 50, 100, 100) == 0.5
    assert control.next_temperature(1.0, 50.1, 50, 100) == 1.01   # small gap, small step
    assert control.next_temperature(0.02, 10, 50, 100) == control.MIN_T


def test_ramp_target_falls_linearly_from_dense_then_holds():
    assert control.ramp_target(100, 30, 0, 10) == 100
    assert control.ramp_target(100, 30, 5, 10) == 65
    assert control.ramp_target(100, 30, 10, 10) == 30 and control.ramp_target(100, 30, 99, 10) == 30
    assert control.ramp_target(100, 30, 0, 0) == 30               # no ramp: the final target at once


def test_a_ramped_run_starts_dense_and_its_targets_fall_epoch_by_epoch(scenes_dir, tmp_path):
    logged = []
    r = _train(TrainConfig(str(scenes_dir), str(tmp_path / "r"), init="clip-tiny-test", reduce=0.3, epochs=3,
                           ramp=2, batch_size=16, lr=1e-4, control_every=1), log=logged.append)
    # no initial search: T starts at 0 (dense) and the first update is one controller step at most
    assert not any("initial temperature" in line for line in logged) and r["history"][0]["temperature"] <= 0.5
    targets = [float(line.split("(target ")[1].split(",")[0]) for line in logged if line.startswith("epoch")]
    dense, final = r["gflops_dense"], r["gflops_target"]
    assert dense > targets[0] > targets[1]
    assert targets[1] == pytest.approx(final, rel=1e-3) and targets[2] == pytest.approx(final, rel=1e-3)
    assert r["temperature"] > 0


def test_dense_training_loss_falls(scenes_dir, tmp_path):
    r = _train(TrainConfig(str(scenes_dir), str(tmp_path / "run"), init="clip-tiny-test", epochs=8,
                                  batch_size=16, lr=1e-3), log=lambda *_: None)
    losses = [h["loss"] for h in r["history"]]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    m = madtp_deploy.load(tmp_path / "run" / "madtp.pt")
    assert m.temperature == 0.0
    s = madtp_deploy.load(tmp_path / "run" / "model.safetensors")
    torch.testing.assert_close(dict(m.state_dict()), dict(s.state_dict()))


def test_compression_moves_gflops_toward_target(scenes_dir, tmp_path):
    r = _train(TrainConfig(str(scenes_dir), str(tmp_path / "c"), init="clip-tiny-test", reduce=0.15,
                                  epochs=2, batch_size=16, lr=1e-4, control_every=2), log=lambda *_: None)
    dense, target, cur = r["gflops_dense"], r["gflops_target"], r["gflops_current"]
    assert abs(cur - target) < abs(dense - target) * 0.5
    assert r["temperature"] > 0 and any(h["align"] > 0 for h in r["history"])
    m = madtp_deploy.load(tmp_path / "c" / "madtp.pt")
    assert m.temperature == pytest.approx(r["temperature"])


def test_interrupted_training_keeps_the_last_complete_checkpoint(scenes_dir, tmp_path, monkeypatch):
    out = tmp_path / "i"
    cfg = TrainConfig(str(scenes_dir), str(out), init="clip-tiny-test", epochs=1, batch_size=32)
    _train(cfg, log=lambda *_: None)
    good = (out / "madtp.pt").read_bytes()
    real_save = torch.save

    def dying_save(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        raise KeyboardInterrupt  # killed right after writing the temporary file

    monkeypatch.setattr(loop.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _train(TrainConfig(str(scenes_dir), str(out), init="clip-tiny-test", epochs=2, batch_size=32,
                                  resume=True), log=lambda *_: None)
    monkeypatch.setattr(loop.torch, "save", real_save)
    assert (out / "madtp.pt").read_bytes() == good
    assert madtp_deploy.load(out / "madtp.pt") is not None
    # and resuming completes the run from the last complete epoch
    _train(TrainConfig(str(scenes_dir), str(out), init="clip-tiny-test", epochs=2, batch_size=32,
                              resume=True), log=lambda *_: None)
    assert torch.load(out / "madtp.pt", weights_only=True)["epoch"] == 1


def test_cli_bad_dataset_is_one_line(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "madtp_deploy.cli", "train", "--data", str(tmp_path / "nope"),
                        "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "dataset folder not found" in r.stderr and r.stderr.count("\n") == 1
