"""Helpers for the reliability catalogue: run the CLI in-process and check the error contract."""

import json
import tempfile

import pytest
import torch
from typer.testing import CliRunner

import madtp_deploy
from madtp_deploy.cli import app

from ..conftest import TINY


def cli(*args):
    """The real command (same error handling as the console script), in-process."""
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="madtp-deploy")


def assert_one_line_error(r, *needles):
    """Exit code 2, exactly one stderr line naming each needle and a fix, no traceback."""
    assert r.exit_code == 2, (r.exit_code, r.stderr, r.stdout, r.exception)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and r.stderr.endswith("\n"), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "fix:" in lines[0], lines[0]
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder for this test only, so leftover temp folders are visible."""
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture(scope="session")
def tiny_state():
    return dict(madtp_deploy.load(TINY).state_dict())


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, tiny_state, hf_dir):
    """Bad model sources: name -> (path, text the error must contain)."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("bad_models")
    out = {}
    for name, t in (("nan", float("nan")), ("neg", -1.0), ("inf", float("inf"))):
        p = d / f"t_{name}.pt"
        torch.save({"model": tiny_state, "temperature": t}, p)
        out[f"temperature_{name}"] = (p, "field 'temperature'")
    spec = madtp_deploy.specs.get_spec(TINY).to_dict()
    p = d / "spec_unknown.pt"
    torch.save({"model": tiny_state, "temperature": 1.0, "spec": spec | {"colour": "red"}}, p)
    out["spec_unknown_field"] = (p, "colour")
    p = d / "spec_type.pt"
    torch.save({"model": tiny_state, "temperature": 1.0, "spec": spec | {"image_size": "32"}}, p)
    out["spec_wrong_type"] = (p, "spec.image_size")
    p = d / "spec_list.pt"
    torch.save({"model": tiny_state, "temperature": 1.0, "spec": [1, 2]}, p)
    out["spec_not_a_dict"] = (p, "field 'spec'")
    p = d / "corrupt.pt"
    p.write_bytes(b"garbage")
    out["corrupt"] = (p, "corrupt.pt")
    p = d / "trunc.pt"
    torch.save({"model": tiny_state, "temperature": 1.0}, p)
    p.write_bytes(p.read_bytes()[: 4000])
    out["truncated"] = (p, "trunc.pt")
    st = d / "st" / "m.safetensors"
    st.parent.mkdir()
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(st))
    st.with_suffix(".json").write_text("[1, 2]")
    out["safetensors_meta_list"] = (st, "m.json")
    st2 = d / "st2" / "m.safetensors"
    st2.parent.mkdir()
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(st2))
    st2.with_suffix(".json").write_text(json.dumps({"spec": spec, "temperature": float("-inf")}))
    out["safetensors_meta_temperature"] = (st2, "field 'temperature'")
    hf_src, _ = hf_dir
    for name, cfg in (("hf_config_list", [1, 2]), ("hf_vision_config_list", None)):
        h = d / name
        h.mkdir()
        for f in hf_src.iterdir():
            (h / f.name).write_bytes(f.read_bytes())
        if cfg is None:
            cfg = json.loads((hf_src / "config.json").read_text()) | {"vision_config": [3]}
        (h / "config.json").write_text(json.dumps(cfg))
        out[name] = (h, "config.json")
    return out


@pytest.fixture(scope="session")
def small_scenes(tmp_path_factory):
    """16 training images (32 captions), 4 val, 8 test: the smallest dataset the trainer accepts."""
    from madtp_deploy.data import scenes

    return scenes.generate(tmp_path_factory.mktemp("small_scenes"), n_train=16, n_val=4, n_test=8, seed=2)
