"""Exported graphs against eager PyTorch, with inputs that prune differently."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import madtp_deploy
from madtp_deploy.onnx import io as onnx_io
from madtp_deploy.onnx.export import cached_export, export_model
from madtp_deploy.runtime import open_session

from ..conftest import TINY
from ..shipped_artifacts import MODEL


@pytest.fixture(scope="module", params=["reference", "invariant", "packed"])
def exported(request, tmp_path_factory):
    m = madtp_deploy.load(TINY, mode=request.param, temperature=3.0)
    out = tmp_path_factory.mktemp(f"export-{request.param}")
    paths = export_model(m, out, "tiny", source=TINY, log=lambda *_: None)
    return m, out, paths


def _three_varied_images(m):
    x = onnx_io.sample_images(m.spec, 40, seed=3)[0]
    with torch.no_grad():
        kept = [tuple(m.encode_image(x[i:i + 1]).kept[0].tolist()) for i in range(40)]
    picks, seen = [], set()
    for i, k in enumerate(kept):
        if k not in seen:
            seen.add(k)
            picks.append(i)
    assert len(picks) >= 3, "need three inputs with different keep counts"
    return x, picks[:3]


def test_files_and_sidecars(exported):
    m, out, paths = exported
    names = sorted(p.name for p in paths)
    assert names == ["tiny.image.json", "tiny.image.onnx", "tiny.text.json", "tiny.text.onnx"]
    side = json.loads((out / "tiny.image.json").read_text())
    assert side["model"]["temperature"] == 3.0 and side["model"]["mode"] == m.mode
    assert side["io"]["inputs"][0]["axes"][0] == "batch" and side["opset"] == 20
    assert side["validation"]["passed"] and len(side["file_sha256"]) == 64
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staging leftovers"


@pytest.mark.parametrize("batch", [1, 8, 32])
def test_image_onnx_matches_eager(exported, batch):
    m, out, _ = exported
    session = open_session(out / "tiny.image.onnx", backend="ort")
    x, picks = _three_varied_images(m)
    for p in picks:  # each of the three inputs, repeated and mixed with others to fill the batch
        idx = [p] + [(p + 7 * j) % 40 for j in range(1, batch)]
        got = session.run({"pixels": x[idx].numpy()})
        with torch.no_grad():
            want = m.encode_image(x[idx])
        np.testing.assert_allclose(got["embeds"], want.embeds.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_array_equal(got["kept"], want.kept.numpy())


@pytest.mark.parametrize("batch", [1, 8, 32])
def test_text_onnx_matches_eager(exported, batch):
    m, out, _ = exported
    session = open_session(out / "tiny.text.onnx", backend="ort")
    ids, mask = onnx_io.sample_text(m.spec, batch, seed=batch)
    got = session.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        want = m.encode_text(ids, mask)
    np.testing.assert_allclose(got["embeds"], want.embeds.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got["kept"], want.kept.numpy())


def test_keep_count_is_not_a_constant_in_the_graph(exported):
    m, out, _ = exported
    session = open_session(out / "tiny.image.onnx", backend="ort")
    x, picks = _three_varied_images(m)
    a = session.run({"pixels": x[picks[0]:picks[0] + 1].numpy()})["kept"]
    b = session.run({"pixels": x[picks[1]:picks[1] + 1].numpy()})["kept"]
    assert not np.array_equal(a, b)


def test_validate_command_rereads_the_sidecar(exported):
    _, out, _ = exported
    r = subprocess.run([sys.executable, "-m", "madtp_deploy.cli", "validate", str(out / "tiny.image.onnx")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated" in r.stdout


def test_tolerance_miss_is_a_loud_warning_that_keeps_the_artifact(exported):
    from madtp_deploy.onnx.validate import validate_against_eager

    m, out, _ = exported
    lines = []
    r = validate_against_eager(out / "tiny.image.onnx", m, "image", batch_sizes=(2,), atol=1e-12, log=lines.append)
    assert not r["passed"] and r["atol_that_would_pass"] > 1e-12
    assert "WARNING" in lines[-1] and "would have passed" in lines[-1]
    assert (out / "tiny.image.onnx").exists()


def test_cached_export_reuses_only_the_same_graph(shipped_packed_cache, tmp_path, monkeypatch):
    """The bench's and the calibration's export cache: a graph whose sidecar records the same
    weights, temperature and mode is reused under any label, and from a `reuse` folder (the bench
    times what `madtp-deploy export` wrote to export/); a changed temperature or mode is a new export
    into the cache. Runs on the run's shared cache (the test model's packed graphs, exported once) with
    the exporter replaced by a recorder: the decisions are under test here, the export in the tests above.
    Bugs caught: a cache keyed on the label alone serves a stale graph (or re-exports under a new
    label); `reuse` ignored, so `make demo` exports the packed image encoder twice; temperature or mode
    left out of the key."""
    from madtp_deploy.onnx import export as export_module

    exports = []
    monkeypatch.setattr(export_module, "export_model",
                        lambda model, out, name, **kw: exports.append((model.temperature, model.mode, out, name)))
    m = madtp_deploy.load(MODEL, mode="packed")
    made = cached_export(m, shipped_packed_cache, "another-label", ("image",))["image"]
    assert made.parent == shipped_packed_cache and made.is_file()
    bench = tmp_path / ".bench"
    assert cached_export(m, bench, "packed", ("image",), reuse=(shipped_packed_cache,))["image"] == made
    assert exports == [] and not bench.exists()
    t = m.temperature
    m.temperature = t + 1.0
    hotter = cached_export(m, bench, "a", ("image",), reuse=(shipped_packed_cache,))["image"]
    m.temperature, m.mode = t, "invariant"
    padded = cached_export(m, bench, "a", ("image",), reuse=(shipped_packed_cache,))["image"]
    assert [(e[0], e[1], e[2]) for e in exports] == [(t + 1.0, "packed", bench), (t, "invariant", bench)]
    assert len({made, hotter, padded}) == 3 and hotter.parent == padded.parent == bench
    assert [hotter.name, padded.name] == [f"{e[3]}.image.onnx" for e in exports]
