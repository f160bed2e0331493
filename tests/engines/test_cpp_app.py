"""engines/cpp (madtp_infer) built against the torch wheel, running an AOTInductor package of the
tiny model: embeddings within 1e-4 of eager and equal keep counts, at batch 1 and 8."""

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import madtp_deploy
from madtp_deploy import aoti
from madtp_deploy.onnx import io as onnx_io

from ..conftest import TINY


@pytest.fixture(scope="module")
def app(tmp_path_factory, monkeypatch_module):
    """A cold build (fresh inductor cache, fresh CMake folder), C++ and AOTI compile overlapped."""
    d = tmp_path_factory.mktemp("cpp")
    monkeypatch_module.setenv("TORCHINDUCTOR_CACHE_DIR", str(d / "inductor-cache"))
    m = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        build = pool.submit(aoti.build_cpp_app, d / "build", log=lambda *_: None)
        paths = aoti.export_aoti(m, d, "tiny", source=TINY, encoders=("image",), log=lambda *_: None)
        exe = build.result()
    print(f"\nC++ app + AOTI package built in {time.perf_counter() - t0:.1f} s")
    return m, exe, paths[0], d


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _varied(m, io, pool=24):
    """Images from the IO contract's generator, and three of them whose keep counts differ."""
    x = io.example(m.spec, pool, seed=2)["pixels"].numpy()
    kept = [tuple(io.eager(m, {"pixels": x[i:i + 1]})["kept"][0]) for i in range(pool)]
    firsts = list({k: i for i, k in reversed(list(enumerate(kept)))}.values())
    assert len(firsts) >= 3, "need three images that prune differently"
    return x, firsts[:3]


def _run(exe, package, files):
    r = subprocess.run([str(exe), "--package", str(package), "--repeat", "2", "--warmup", "1", *map(str, files)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_cpp_app_matches_eager_at_batch_1_and_8(app):
    m, exe, package, d = app
    io = onnx_io.encoder_io(m, "image")
    x, picks = _varied(m, io)
    batches = [[p] for p in picks] + [[picks[0], picks[1], picks[2], *range(5)]]
    for j, idx in enumerate(batches):
        files = []
        for k, i in enumerate(idx):  # one file per image, plus one [B,3,H,W] file for the rest
            files.append(d / f"img{j}-{k}.raw")
            aoti.write_raw(files[-1], x[i])
        got = _run(exe, package, files)
        want = io.eager(m, {"pixels": x[idx]})
        assert got["batch"] == len(idx) and got["latency_ms"]["runs"] == 2
        assert np.array_equal(np.asarray(got["kept"]), want["kept"])
        np.testing.assert_allclose(np.asarray(got["embeds"], dtype=np.float32), want["embeds"], atol=1e-4, rtol=0)
    assert len({tuple(io.eager(m, {"pixels": x[[p]]})["kept"][0]) for p in picks}) == 3


def test_cpp_app_rejects_bad_input_with_one_line(app):
    m, exe, package, d = app
    bad = d / "bad.raw"
    bad.write_bytes(b"not an image")
    r = subprocess.run([str(exe), "--package", str(package), str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "MADTPRAW" in r.stderr
    r = subprocess.run([str(exe), "--engine", "x.plan", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "MADTP_WITH_TENSORRT" in r.stderr


def test_python_aoti_session_matches_eager(app):
    from madtp_deploy.runtime import open_session

    m, _, package, _ = app
    io = onnx_io.encoder_io(m, "image")
    x = io.example(m.spec, 8, seed=5)
    s = open_session(package, backend="aoti")
    a = s.run({**{k: v.numpy() for k, v in x.items()}, "extra": np.zeros(1)})
    want = io.eager(m, x)
    assert np.array_equal(a["kept"], want["kept"])
    np.testing.assert_allclose(a["embeds"], want["embeds"], atol=1e-4, rtol=0)
    b = s.run({k: v[:2].numpy() for k, v in x.items()})
    assert a["embeds"].shape == (8, m.spec.embed_dim) and b["embeds"].shape[0] == 2  # outputs not reused


def test_raw_round_trip(tmp_path):
    a = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    aoti.write_raw(tmp_path / "a.raw", a)
    np.testing.assert_array_equal(aoti.read_raw(tmp_path / "a.raw"), a)
