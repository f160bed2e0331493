"""BLIP retrieval's image and text encoders through the CLIP encoders' IO contract: exported by the
CLI, onnxruntime against eager on inputs that prune differently, validated, checked, refused static."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch

import madtp_deploy
from madtp_deploy.errors import InputError, UsageError
from madtp_deploy.models.inputs import check_blip_text
from madtp_deploy.onnx import io as onnx_io
from madtp_deploy.runtime import open_session
from madtp_deploy.specs import get_spec

from ..blip_retrieval_shared import (CLI, ONE_THREAD, SPEC, TEMPERATURE,  # noqa: F401 - fixtures
                                     blip_exported, blip_model)


def _own_kept(model, io, x) -> set:
    """The distinct keep counts of the instances on their own (batch 1)."""
    return {tuple(io.eager(model, {k: v[i:i + 1] for k, v in x.items()})["kept"][0].tolist())
            for i in range(len(next(iter(x.values()))))}


def _files(blip_exported):
    out, r = blip_exported
    assert r.returncode == 0, r.stderr
    return out


def test_cli_exports_both_encoders(blip_exported):
    out = _files(blip_exported)
    assert sorted(p.name for p in out.iterdir()) == ["bt.image.json", "bt.image.onnx", "bt.text.json", "bt.text.onnx"]
    for enc, names in (("image", ["pixels"]), ("text", ["input_ids", "attention_mask"])):
        side = json.loads((out / f"bt.{enc}.json").read_text())
        assert side["model"]["source"] == SPEC and side["model"]["spec"]["task"] == "retrieval"
        assert [t["name"] for t in side["io"]["inputs"]] == names
        assert [t["name"] for t in side["io"]["outputs"]] == ["embeds", "kept"]
        assert side["model"]["mode"] == "packed" and side["model"]["temperature"] == TEMPERATURE
        assert side["shapes"] == "dynamic" and side["io"]["inputs"][-1]["axes"] == (
            ["batch", 3, 32, 32] if enc == "image" else ["batch", "seq"])


@pytest.mark.parametrize("encoder", ["image", "text"])
def test_ort_matches_eager_at_batch_1_and_8(blip_exported, blip_model, encoder):
    out = _files(blip_exported)
    session = open_session(out / f"bt.{encoder}.onnx", backend="ort")
    io = onnx_io.encoder_io(blip_model, encoder)
    x = io.example(blip_model.spec, 8, seed=5)
    assert len(_own_kept(blip_model, io, x)) >= 2, "the batch must prune differently"
    for idx in [[i] for i in range(3)] + [list(range(8))]:
        batch = {k: v[idx].numpy() for k, v in x.items()}
        got, want = session.run(batch), io.eager(blip_model, batch)
        np.testing.assert_allclose(got["embeds"], want["embeds"], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(got["kept"], want["kept"])


def test_text_graph_serves_shorter_captions(blip_exported, blip_model):
    out = _files(blip_exported)
    session = open_session(out / "bt.text.onnx", backend="ort")
    ids, mask = onnx_io.sample_bert_text(blip_model.spec, 6, seed=2)
    ids, mask = ids[:, :9], mask[:, :9]  # the graph was traced at 32 tokens
    got = session.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.inference_mode():
        want = blip_model.encode_text(ids, mask)
    np.testing.assert_allclose(got["embeds"], want.embeds.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got["kept"], want.kept.numpy())


def test_cli_validate_rebuilds_the_model_from_the_sidecar(blip_exported):
    out = _files(blip_exported)
    r = subprocess.run(CLI + ["validate", str(out / "bt.text.onnx")], capture_output=True, text=True, timeout=300,
                       env=ONE_THREAD)
    assert r.returncode == 0, r.stdout + r.stderr
    said = " ".join(r.stdout.split())  # rich wraps long lines
    assert "validated bt.text.onnx" in said and "(6 cases" in said  # 3 single inputs, batch 1, 8, 32


def test_ort_session_runs_the_blip_input_checks(blip_exported):
    out = _files(blip_exported)
    image = open_session(out / "bt.image.onnx", backend="ort")
    text = open_session(out / "bt.text.onnx", backend="ort")
    px = onnx_io.sample_images(get_spec(SPEC), 2)[0].numpy()
    ids, mask = (t.numpy() for t in onnx_io.sample_bert_text(get_spec(SPEC), 2))
    with pytest.raises(InputError, match="NaN"):
        image.run({"pixels": np.where(np.arange(px.size).reshape(px.shape) == 5, np.nan, px).astype(np.float32)})
    with pytest.raises(InputError, match="vocabulary"):
        text.run({"input_ids": ids + 64, "attention_mask": mask})
    bad = mask.copy()
    bad[1, 0] = 0
    with pytest.raises(InputError, match="position 0"):
        text.run({"input_ids": ids, "attention_mask": bad})


def test_bert_sampler_makes_bert_captions():
    spec = get_spec(SPEC)
    ids, mask = onnx_io.sample_bert_text(spec, 16, seed=0)
    cls, sep, _ = onnx_io.bert_special_ids(spec)
    lengths = mask.sum(1)
    assert ids.shape == mask.shape == (16, 32) and bool((ids[:, 0] == cls).all())
    assert bool((ids[torch.arange(16), lengths - 1] == sep).all()) and int((ids == sep).sum()) == 16
    assert bool((ids[mask == 0] == 0).all()) and bool((mask[:, :-1] >= mask[:, 1:]).all())  # right padding
    assert len(set(lengths.tolist())) >= 5 and int(lengths.min()) >= onnx_io.MIN_TEXT_LEN
    check_blip_text(spec, ids, mask)


def test_static_shapes_refused_in_one_line(tmp_path):
    with pytest.raises(UsageError, match="--shapes dynamic"):
        onnx_io.encoder_io(get_spec(SPEC), "image", static=True)
    r = subprocess.run(CLI + ["export", "--model", SPEC, "--temperature", "3", "--shapes", "static",
                              "--output", str(tmp_path)], capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--shapes dynamic" in r.stderr, r.stderr
    assert not list(tmp_path.glob("*.onnx"))


# -- the other two batch modes: ~20 s of export each, run with MADTP_SLOW=1 ---------------------------

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MADTP_SLOW"), reason="BLIP ONNX export per mode: set MADTP_SLOW=1")
@pytest.mark.parametrize("mode", ["reference", "invariant"])
def test_other_modes_match_eager(tmp_path, mode):
    from madtp_deploy.onnx.export import export_model

    m = madtp_deploy.load(SPEC, mode=mode, temperature=TEMPERATURE)
    export_model(m, tmp_path, "bt", source=SPEC, batch_sizes=(1, 8), log=lambda *_: None)
    for encoder in ("image", "text"):
        session = open_session(tmp_path / f"bt.{encoder}.onnx", backend="ort")
        io = onnx_io.encoder_io(m, encoder)
        x = io.example(m.spec, 8, seed=5)
        assert len(_own_kept(m, io, x)) >= 2  # (reference mode gives the batch its max-keep)
        for idx in [[i] for i in range(3)] + [list(range(8))]:
            batch = {k: v[idx].numpy() for k, v in x.items()}
            got, want = session.run(batch), io.eager(m, batch)
            np.testing.assert_allclose(got["embeds"], want["embeds"], atol=1e-4, rtol=0)
            np.testing.assert_array_equal(got["kept"], want["kept"])
