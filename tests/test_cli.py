import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "madtp_deploy.cli"]


def run(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300)


def test_info_prints_spec_and_gflops():
    r = run("info", "clip-tiny-test")
    assert r.returncode == 0, r.stderr
    assert "GFLOPs" in r.stdout and "parameters" in r.stdout


@pytest.mark.parametrize("arg", ["no-such-model", "/nonexistent/model.pt"])
def test_bad_model_is_one_line_exit_2(arg):
    r = run("info", arg)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_corrupted_checkpoint_is_one_line_exit_2(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    r = run("info", str(tmp_path / "bad.pt"))
    assert r.returncode == 2 and str(tmp_path / "bad.pt") in r.stderr and "Traceback" not in r.stderr


def test_missing_key_names_file_and_key(tmp_path):
    import torch

    import madtp_deploy
    sd = dict(madtp_deploy.load("clip-tiny-test").state_dict())
    sd.pop("ln_final.bias")
    torch.save({"model": sd, "temperature": 1.0}, tmp_path / "m.pt")
    r = run("info", str(tmp_path / "m.pt"))
    assert r.returncode == 2 and "ln_final.bias" in r.stderr and "m.pt" in r.stderr
    assert r.stderr.count("\n") == 1


def test_export_blip_nlvr_writes_graph_and_sidecar(tmp_path):
    """Bugs caught: BLIP NLVR2 models refused by `export` or `validate`, a graph written without its
    sidecar, a packed graph (the default) that differs from eager; a static-shape request for BLIP
    accepted (it has no capacities) instead of a one-line error."""
    import json

    r = run("export", "--model", "blip-nlvr-tiny", "--temperature", "5", "--output", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr
    side = json.loads((tmp_path / "x" / "blip-nlvr-tiny.nlvr.json").read_text())
    assert side["encoder"] == "nlvr" and side["model"]["mode"] == "packed" and side["validation"]["passed"]
    assert len({tuple(k) for k in side["validation"]["varied_inputs_kept"]}) > 1
    r = run("validate", str(tmp_path / "x" / "blip-nlvr-tiny.nlvr.onnx"))
    assert r.returncode == 0, r.stderr
    r = run("export", "--model", "blip-nlvr-tiny", "--shapes", "static", "--output", str(tmp_path / "y"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "fix:" in r.stderr
    assert not (tmp_path / "y").exists()


def test_eval_a_peer_matched_to_madtp(scenes_dir, tmp_path):
    """Catches: --method / --match not reaching the evaluator (the dense model evaluated instead), the
    peer run with MADTP's pruning on, the knob not printed."""
    import json

    madtp = run("eval", "--model", "clip-tiny-test", "--temperature", "3", "--data", str(scenes_dir),
                "--batch-size", "8", "--json", str(tmp_path / "madtp.json"))
    assert madtp.returncode == 0, madtp.stderr
    peer = run("eval", "--model", "clip-tiny-test", "--method", "topk", "--match", "clip-tiny-test",
               "--temperature", "3", "--data", str(scenes_dir), "--batch-size", "8",
               "--json", str(tmp_path / "topk.json"))
    assert peer.returncode == 0, peer.stderr
    assert "--match: topk" in peer.stdout and "knob keep=" in peer.stdout
    m, p = (json.loads((tmp_path / f).read_text()) for f in ("madtp.json", "topk.json"))
    assert p["method"] == "topk" and p["temperature"] == 0 and p["match_model"] == "clip-tiny-test"
    assert p["match"]["target_gflops_image"] == pytest.approx(m["gflops_image"]["mean"])
    # the peer ran at the matched knob (on this tiny model the nearest knob is 2.2% off: said, not hidden)
    assert p["gflops_image"]["mean"] == pytest.approx(p["match"]["gflops_image"])
    assert abs(p["gflops_image"]["mean"] / m["gflops_image"]["mean"] - 1) == pytest.approx(abs(p["match"]["error"]))
    bad = run("eval", "--model", "clip-tiny-test", "--method", "tome", "--data", str(scenes_dir))
    assert bad.returncode == 2 and "--match" in bad.stderr and "Traceback" not in bad.stderr


def test_eval_gallery_ranks_within_folds_and_is_refused_where_it_means_nothing(scenes_dir, tmp_path):
    """Catches: --gallery parsed but not passed to the evaluator (whole-split recall reported as the
    galleries'), a non-divisor accepted or refused with a traceback, and a BLIP evaluator swallowing
    --gallery silently (its recall is not within galleries)."""
    import json

    common = ["eval", "--model", "clip-tiny-test", "--temperature", "3", "--data", str(scenes_dir), "--batch-size", "8"]
    whole = run(*common, "--json", str(tmp_path / "whole.json"))
    folds = run(*common, "--gallery", "8", "--json", str(tmp_path / "folds.json"))
    assert whole.returncode == 0 and folds.returncode == 0, whole.stderr + folds.stderr
    w, f = (json.loads((tmp_path / n).read_text()) for n in ("whole.json", "folds.json"))
    assert w["gallery"] == w["images"] == 24 and f["gallery"] == 8
    assert "3 galleries of 8 images" in folds.stdout
    # fewer distractors: no query ranks worse, and on 24 images some rank better (recall@1 of a tiny model)
    keys = ("txt_r1", "txt_r5", "img_r1", "img_r5")
    assert all(f[k] >= w[k] for k in keys) and any(f[k] > w[k] for k in keys)
    bad = run(*common, "--gallery", "7")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "divisor of 24" in bad.stderr
    blip = run("eval", "--model", "blip-nlvr-tiny", "--data", str(scenes_dir), "--gallery", "8")
    assert blip.returncode == 2 and blip.stderr.count("\n") == 1 and "fix: drop --gallery" in blip.stderr


def test_blip_families_refuse_a_gallery():
    """Catches: a BLIP family registered with the gallery feature, whose evaluator would swallow --gallery
    (its recall is not within galleries)."""
    from madtp_deploy import families
    from madtp_deploy.errors import UsageError

    for name in ("blip-retrieval", "blip-nlvr"):
        with pytest.raises(UsageError, match="--gallery 8: .* BLIP .* fix: drop --gallery"):
            families.get(name).require("gallery", "--gallery 8")
    families.get("clip").require("gallery", "--gallery 8")


def test_train_ramp_reaches_the_loop_and_a_ramp_longer_than_the_run_is_refused(scenes_dir, tmp_path):
    """Bugs caught: `--ramp` parsed but not passed on to the training config (the run compresses at once, with
    the reference's initial search), and a ramp longer than the run accepted (its final target never reached)
    or refused with a traceback, or after writing the run folder."""
    common = ["train", "--data", str(scenes_dir), "--init", "clip-tiny-test", "--reduce", "0.3", "--batch-size", "16",
              "--control-every", "1"]
    r = run(*common, "--epochs", "2", "--ramp", "1", "--output", str(tmp_path / "ok"))
    assert r.returncode == 0, r.stderr
    assert "target ramp: dense" in r.stdout + r.stderr and "initial temperature" not in r.stdout + r.stderr
    r = run(*common, "--epochs", "2", "--ramp", "3", "--output", str(tmp_path / "bad"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "--ramp" in r.stderr and "fix:" in r.stderr and not (tmp_path / "bad").exists()
