"""Every backend checks its inputs by the artifact's IO contract and names outputs by it (runtime/base.py)."""


import numpy as np
import pytest

import madtp_deploy
from madtp_deploy.errors import InputError, RuntimeBackendError
from madtp_deploy.onnx.export import export_model
from madtp_deploy.onnx.io import encoder_io
from madtp_deploy.runtime import open_session
from madtp_deploy.runtime.sessions import AotiSession

TINY = "clip-tiny-test"


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    m = madtp_deploy.load(TINY, mode="packed", temperature=3.0)
    out = tmp_path_factory.mktemp("tiny-export")
    export_model(m, out, "tiny", source=TINY, validate=False, log=lambda *_: None, encoders=("image",))
    return m, out / "tiny.image.onnx"


def _pixels(n=2, value=None):
    x = np.random.default_rng(0).standard_normal((n, 3, 32, 32), dtype=np.float32)
    if value is not None:
        x[0, 0, 0, 0] = value
    return x


def test_ort_session_names_a_missing_input(tiny_export):
    """Bug caught: a missing input was a raw KeyError from the feed dict (no name, no fix)."""
    _, path = tiny_export
    s = open_session(path, backend="ort")
    with pytest.raises(InputError, match=r"pixels missing.*fix: pass pixels"):
        s.run({"images": _pixels()})


def test_ort_session_runs_the_model_input_checks(tiny_export):
    """Bug caught: the eager model's input checks (NaN pixels) skipped by the ORT session."""
    _, path = tiny_export
    s = open_session(path, backend="ort")
    with pytest.raises(InputError, match="NaN"):
        s.run({"pixels": _pixels(value=np.nan)})
    out = s.run({"pixels": _pixels(), "extra": 1})  # extras ignored
    assert list(out) == ["embeds", "kept"]


def test_a_broken_sidecar_is_an_error_not_silently_unchecked(tiny_export, tmp_path):
    """Bug caught: a sidecar that could not be read disabled the input checks without a word (a broad
    except in runtime/sessions.py): the session now refuses, naming the file and the fix."""
    _, path = tiny_export
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(RuntimeBackendError, match=r"tiny.image.json: unreadable sidecar.*fix: re-export"):
        open_session(copy, backend="ort")
    copy.with_suffix(".json").unlink()
    with pytest.raises(RuntimeBackendError, match=r"sidecar missing.*fix: re-export"):
        open_session(copy, backend="ort")


def test_ort_session_refuses_what_is_not_onnx(tiny_export, tmp_path):
    """Bug caught: a file that is not ONNX ended in onnxruntime's InvalidProtobuf traceback."""
    _, path = tiny_export
    bad = tmp_path / "bad.image.onnx"
    bad.write_bytes(b"not a protobuf at all")
    bad.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(RuntimeBackendError, match=r"bad.image.onnx: onnxruntime cannot load it.*fix:"):
        open_session(bad, backend="ort")


def test_aoti_session_checks_inputs_and_maps_outputs(tiny_export, tmp_path):
    """Bug caught: the AOTI session indexed its inputs raw (KeyError on a missing one) and skipped the
    model's input checks; its outputs are keyed by the contract's names."""
    m, path = tiny_export
    pkg = tmp_path / "tiny.image.pt2"
    pkg.write_bytes(b"fake package")
    pkg.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    io = encoder_io(m, "image")
    calls = []

    def runner(pixels):
        calls.append(pixels.shape)
        out = io.eager(m, {"pixels": pixels})
        import torch
        return [torch.from_numpy(out[n]) for n in io.output_names]

    s = AotiSession(pkg, runner=runner)
    with pytest.raises(InputError, match="pixels missing"):
        s.run({})
    with pytest.raises(InputError, match="NaN"):
        s.run({"pixels": _pixels(value=np.nan)})
    assert calls == []
    out = s.run({"pixels": _pixels()})
    assert set(out) == {"embeds", "kept"} and out["kept"].shape == (2, m.spec.vision_layers)


def test_torch_session_names_a_missing_input():
    s = open_session(TINY, backend="torch", encoder="text", temperature=3.0)
    with pytest.raises(InputError, match="input_ids, attention_mask missing"):
        s.run({})
