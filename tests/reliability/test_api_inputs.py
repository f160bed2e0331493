"""The public API's inputs: bad tensors and numbers give a one-line InputError (a ValueError too),
never a silent wrong answer (their cost: scripts/input_checks.py, docs/BENCHMARKS.md)."""

import re

import pytest
import torch

import madtp_deploy
from madtp_deploy.errors import CheckpointError, InputError, UsageError
from madtp_deploy.models.inputs import check_pixels, check_text
from madtp_deploy.specs import get_spec
from madtp_deploy.train.loop import TrainConfig

from ..conftest import TINY, tiny_inputs

SPEC = get_spec(TINY)  # 32 px, context 16, vocab 64, EOT 63


def _px(**kw):
    x = tiny_inputs(2)[0]
    for k, v in kw.items():
        x = v(x)
    return x


def _nan(x):
    x = x.clone()
    x[1, 0, 3, 3] = float("nan")
    return x


def _inf(x):
    x = x.clone()
    x[0, 2, 0, 0] = float("inf")
    return x


PIXELS = {
    "nan": (lambda: _nan(_px()), "NaN or Inf"),
    "inf": (lambda: _inf(_px()), "NaN or Inf"),
    "65px-for-a-64px-model": (lambda: torch.zeros(2, 3, 33, 33), "expected [B, 3, 32, 32]"),
    "channels-last": (lambda: torch.zeros(2, 32, 32, 3), "expected [B, 3, 32, 32]"),
    "no-batch-dim": (lambda: torch.zeros(3, 32, 32), "expected [B, 3, 32, 32]"),
    "empty-batch": (lambda: torch.zeros(0, 3, 32, 32), "expected [B, 3, 32, 32]"),
    "uint8": (lambda: torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "dtype torch.uint8"),
    "0-255-floats": (lambda: torch.rand(2, 3, 32, 32) * 255, "not CLIP-normalised"),
    "numpy": (lambda: _px().numpy(), "expected a torch.Tensor"),
}


def _ids(eot_at=(5, 9), length=16):
    ids = torch.zeros(len(eot_at), length, dtype=torch.long)
    ids[:, 0] = 62
    for r, e in enumerate(eot_at):
        ids[r, 1:e] = 7
        ids[r, e] = 63
    return ids


def _masked_eot():
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # the EOT of row 1 is outside its mask
    return ids, mask


TEXT = {
    "float-ids": (lambda: (_ids().float(), None), "dtype torch.float32"),
    "id-over-vocab": (lambda: (_ids().index_fill(1, torch.tensor([2]), 64), None), "token id 64"),
    "negative-id": (lambda: (_ids().index_fill(1, torch.tensor([2]), -1), None), "token id -1"),
    "no-eot": (lambda: (_ids().masked_fill(_ids() == 63, 5), None), "input_ids[0]: no end-of-text"),
    "eot-outside-mask": (_masked_eot, "input_ids[1]: no end-of-text"),
    "longer-than-context": (lambda: (_ids(length=17), None), "1 <= L <= 16"),
    "1d": (lambda: (_ids()[0], None), "expected [B, L]"),
    "mask-shape": (lambda: (_ids(), torch.ones(2, 15, dtype=torch.long)), "attention_mask: shape"),
    "mask-values": (lambda: (_ids(), torch.full((2, 16), 2)), "attention_mask: values"),
}


@pytest.mark.parametrize("case", sorted(PIXELS))
def test_bad_pixels(case):
    make, needle = PIXELS[case]
    with pytest.raises(InputError, match=re.escape(needle)) as e:
        check_pixels(SPEC, make())
    assert "fix:" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("case", sorted(TEXT))
def test_bad_text(case):
    make, needle = TEXT[case]
    ids, mask = make()
    with pytest.raises(InputError, match=re.escape(needle)) as e:
        check_text(SPEC, ids, mask)
    assert "fix:" in str(e.value) and "\n" not in str(e.value)


def test_good_inputs_pass():
    px, ids = tiny_inputs(4)
    check_pixels(SPEC, px)
    check_text(SPEC, ids)
    check_text(SPEC, ids, torch.ones_like(ids))
    check_text(SPEC, ids[:, :10].clone().index_fill(1, torch.tensor([9]), 63))  # shorter than the context


def test_checks_are_skipped_while_tracing():
    """torch.export must not see data-dependent checks (they would break the ONNX export)."""
    class M(torch.nn.Module):
        def forward(self, x):
            check_pixels(SPEC, x)
            return x + 1

    ep = torch.export.export(M(), (tiny_inputs(2)[0],))
    assert ep.module()(torch.full((2, 3, 32, 32), 500.0)).shape == (2, 3, 32, 32)  # unchecked in the graph


@pytest.mark.parametrize("t", [float("nan"), -1.0, float("inf"), "3"])
def test_load_rejects_bad_temperature(t):
    with pytest.raises(InputError, match="temperature"):
        madtp_deploy.load(TINY, temperature=t)


def test_load_rejects_bad_mode():
    with pytest.raises(UsageError, match="'fast'"):
        madtp_deploy.load(TINY, mode="fast")


def test_checkpoint_temperature_override_replaces_a_bad_stored_one(tmp_path):
    torch.save({"model": dict(madtp_deploy.load(TINY).state_dict()), "temperature": float("nan")}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="m.pt: field 'temperature'"):
        madtp_deploy.load(tmp_path / "m.pt")
    assert madtp_deploy.load(tmp_path / "m.pt", temperature=2.0).temperature == 2.0


@pytest.mark.parametrize("field, value", [("reduce", 1.0), ("epochs", 0), ("lr", float("nan")), ("batch_size", 0),
                                          ("batch_size", 10**6), ("mode", "fast"), ("weight_decay", -1.0)])
def test_train_config_is_validated_in_the_library(field, value):
    cfg = TrainConfig("data", "out", **{field: value})
    with pytest.raises(UsageError):
        cfg.validate()


def test_encode_all_rejects_batch_size_0(tiny_model):
    from madtp_deploy.evaluate import encode_all

    px, ids = tiny_inputs(2)
    with pytest.raises(InputError, match="batch_size 0"):
        encode_all(tiny_model, px, ids, torch.ones_like(ids), 0)


@pytest.mark.parametrize("case", ["nan", "65px-for-a-64px-model", "0-255-floats", "no-eot"])
def test_the_model_itself_rejects_bad_inputs(case, tiny_model):
    if case in PIXELS:
        with pytest.raises(InputError):
            tiny_model.encode_image(PIXELS[case][0]())
    else:
        with pytest.raises(InputError):
            tiny_model.encode_text(*TEXT[case][0]())
