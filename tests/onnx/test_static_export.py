"""Static-shape export (fixed capacities): TensorRT-clean graphs that give the invariant answers.

Bugs these catch: a static graph whose shapes still depend on values (NonZero, a run-time slot
count); overflow that the graph does not report or reports wrongly; an instance that fits its
capacities but gets a different answer than the exact (invariant) model; capacity profiles
written without provenance; `validate` that forgets the capacities recorded in the sidecar.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import madtp_deploy
from madtp_deploy import capacity
from madtp_deploy.onnx import io as onnx_io
from madtp_deploy.onnx.export import export_model
from madtp_deploy.runtime import open_session

from ..conftest import TINY


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    m = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    out = tmp_path_factory.mktemp("static")
    # capacities from the model's own decisions on the IO contract's examples, at a quantile low
    # enough that some inputs overflow
    profiles = {}
    for enc in ("image", "text"):
        io = onnx_io.encoder_io(m, enc)
        demand = capacity.measure_demand(m, enc, io.example(m.spec, 64, seed=2))
        profiles[enc] = capacity.profile_from_demand(enc, demand, 0.7, {"data": "io examples, seed 2"})
    capacity.apply(m, profiles)
    paths = export_model(m, out, "tiny", source=TINY, log=lambda *_: None, batch_sizes=(1, 8),
                         capacity_profiles={e: p.__dict__ for e, p in profiles.items()})
    return m, out, paths, profiles


@pytest.mark.parametrize("encoder", ["image", "text"])
def test_static_graph_has_no_value_dependent_shapes_and_passes_the_checker(static, encoder):
    import onnx

    from madtp_deploy.trt.check import report

    _, out, _, _ = static
    path = out / f"tiny.{encoder}.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "NonZero" not in ops
    r = report(path)
    assert r["would_fail"] == 0, r["findings"]
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["shapes"] == "static" and side["model"]["capacity"] == static[3][encoder].capacity
    assert side["validation"]["passed"]
    assert side["capacity_profile"]["provenance"]["data"]


@pytest.mark.parametrize("encoder", ["image", "text"])
def test_static_graph_equals_eager_and_fits_equal_invariant(static, encoder):
    m, out, _, _ = static
    io = onnx_io.encoder_io(m, encoder)
    session = open_session(out / f"tiny.{encoder}.onnx", backend="ort")
    inputs = {k: v.numpy() for k, v in io.example(m.spec, 16, seed=9).items()}
    got = session.run(inputs)
    want = io.eager(m, inputs)
    np.testing.assert_allclose(got["embeds"], want["embeds"], atol=1e-4, rtol=0)
    assert np.array_equal(got["kept"], want["kept"]) and np.array_equal(got["overflow"], want["overflow"])
    saved, m.capacity = m.capacity, None
    try:
        exact = onnx_io.encoder_io(m, encoder).eager(m, inputs)
    finally:
        m.capacity = saved
    fits = ~got["overflow"].any(1)
    if encoder == "image":
        assert fits.any() and (~fits).any(), "the examples must include overflowing and fitting instances"
    np.testing.assert_allclose(got["embeds"][fits], exact["embeds"][fits], atol=1e-4, rtol=0)
    assert np.array_equal(got["kept"][fits], exact["kept"][fits])


def test_validate_reapplies_the_recorded_capacities(static):
    _, out, _, _ = static
    r = subprocess.run([sys.executable, "-m", "madtp_deploy.cli", "validate", str(out / "tiny.image.onnx")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_capacity_flops_exceed_own_flops(static):
    from madtp_deploy import flops

    m, _, _, profiles = static
    with torch.no_grad():
        e = m.encode_image(onnx_io.sample_images(m.spec, 16, seed=9)[0])
    own = flops.image_flops(m.spec, e.kept, True).gflops.mean()
    cap = flops.image_flops(m.spec, capacity.capacity_kept(profiles["image"].capacity, 1), True).gflops[0]
    assert cap >= own


def test_ort_session_applies_the_models_input_checks(static):
    """Bug caught: NaN pixels (or 0-255 data) that onnxruntime turns into NaN embeddings with `kept`
    claiming no pruning, silently, because only the eager model checked its inputs."""
    from madtp_deploy.errors import InputError

    m, out, _, _ = static
    session = open_session(out / "tiny.image.onnx", backend="ort")
    px = onnx_io.sample_images(m.spec, 2, seed=1)[0].numpy()
    session.run({"pixels": px})
    px[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError):
        session.run({"pixels": px})
    with pytest.raises(InputError):
        session.run({"pixels": np.full_like(px, 200.0)})
