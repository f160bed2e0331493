"""The real Triton server (from the serving venv) on loopback: concurrent requests answered like local
batch-1 onnxruntime, batches formed, bad requests refused one by one while the rest are answered,
then stopped with nothing left behind (process, shared memory, temp folder)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from madtp_deploy.serve.client import b64, run_in_venv
from madtp_deploy.serve.server import TritonServer, shm_segments

from .helpers import BAD_CAPTIONS, CAPTIONS, bad_images, local_image_answers, local_text_answers, pngs

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # the server's process group: the server and its python-backend stubs
        return True
    except ProcessLookupError:
        return False


def test_real_server(shipped_repo, serve_venv):
    shm_before = shm_segments()
    images = pngs(24)
    server = TritonServer(shipped_repo, venv=serve_venv)
    try:
        server.start()
        assert server.ready()
        # 24 requests of 1-3 images and bad ones among them, 16 in flight: the batcher merges them
        good = [images[i:i + 1 + i % 3] for i in range(0, 24, 2)]
        bad = bad_images(images[0])
        jobs = [{"IMAGE": b64(r)} for r in good]
        for k, (what, data) in enumerate(bad.items()):
            jobs.insert(2 + 3 * k, {"IMAGE": b64([images[1], data])})
        out = run_in_venv({"url": server.grpc_url, "model": "image", "concurrency": 16, "requests": jobs,
                           "max_seconds": 60}, venv=serve_venv)["results"]
        ref = local_image_answers(shipped_repo, images)
        answered = [r for r in out if r["error"] is None]
        refused = [r for r in out if r["error"] is not None]
        assert len(answered) == len(good) and len(refused) == len(bad)
        for r, req in zip(answered, good):
            idx = [images.index(p) for p in req]
            np.testing.assert_allclose(np.array(r["outputs"]["EMBEDS"]), ref["embeds"][idx], atol=1e-4)
            np.testing.assert_array_equal(np.array(r["outputs"]["KEPT"]), ref["kept"][idx])
        for r in refused:
            assert r["error"].startswith("IMAGE[1]: ") and "fix: " in r["error"], r["error"]
        assert sum("(50.0 MP)" in r["error"] for r in refused) == 1  # refused before decoding

        texts = [{"TEXT": b64([c.encode()])} for c in CAPTIONS] + [{"TEXT": b64([v])} for v in BAD_CAPTIONS.values()]
        out = run_in_venv({"url": server.grpc_url, "model": "text", "concurrency": 8, "requests": texts},
                          venv=serve_venv)["results"]
        tref = local_text_answers(shipped_repo, CAPTIONS)
        for r, e, k in zip(out, tref["embeds"], tref["kept"]):
            assert r["error"] is None
            np.testing.assert_allclose(np.array(r["outputs"]["EMBEDS"])[0], e, atol=1e-4)
            np.testing.assert_array_equal(np.array(r["outputs"]["KEPT"])[0], k)
        assert all(r["error"].startswith("TEXT[0]: ") and "fix: " in r["error"] for r in out[len(CAPTIONS):])

        # Triton's own checks: wrong dtype, wrong shape, more images than the max batch
        odd = [{"IMAGE": {"datatype": "FP32", "shape": [1, 1], "values": [0.5]}},
               {"IMAGE": dict(b64([images[0]] * 2), shape=[1, 2])},
               {"IMAGE": b64([b"x"] * 10_000)}]
        out = run_in_venv({"url": server.grpc_url, "model": "image", "concurrency": 3, "requests": odd},
                          venv=serve_venv)["results"]
        assert "IMAGE" in out[0]["error"] and "FP32" in out[0]["error"], out[0]["error"]
        assert "IMAGE" in out[1]["error"] and "[-1,1]" in out[1]["error"], out[1]["error"]
        assert "batch-size must be <= 64" in out[2]["error"], out[2]["error"]

        # still serving, and the statistics API saw batches of more than one request
        again = run_in_venv({"url": server.grpc_url, "model": "image", "requests": [{"IMAGE": b64(images[:1])}]},
                            venv=serve_venv)["results"][0]
        np.testing.assert_array_equal(np.array(again["outputs"]["KEPT"]), ref["kept"][:1])
        stats = {m["name"]: m for m in server.statistics()["model_stats"]}
        sizes = [int(b["batch_size"]) for b in stats["image"]["batch_stats"]]
        assert max(sizes) > 3, f"no merged batch: {sizes}"  # a request has at most 3 images
        workdir, pid = server.workdir, server.proc.pid
    finally:
        rc = server.stop()
    assert rc == 0
    assert not _alive(pid)
    assert not workdir.exists()
    assert shm_segments() <= shm_before


def test_serve_command_stops_on_signal(shipped_repo, serve_venv, tmp_path):
    """`serve` prints its endpoints, forwards SIGINT / SIGTERM, and leaves no server behind."""
    code = ("import typer; from madtp_deploy.serve import commands; app = typer.Typer(); "
            "app.command()(commands.serve); app.command('other')(lambda: None); app()")
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen([sys.executable, "-c", code, "serve", "--repository", str(shipped_repo), "--venv",
                              str(serve_venv)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=tmp_path, start_new_session=True)
        lines, start = [], time.monotonic()
        while time.monotonic() - start < 60:
            line = p.stdout.readline()
            lines.append(line)
            if "temp    " in line or not line:
                break
        assert any("gRPC    127.0.0.1:" in x for x in lines), "".join(lines)
        p.send_signal(sig)
        rest = p.communicate(timeout=60)[0]
        assert p.returncode == 0, "".join(lines) + rest
        assert "stopped (tritonserver exit code 0)" in rest
        assert not _alive(p.pid)
        temp = Path(next(x for x in lines if "temp    " in x).split()[-1])
        assert temp.name.startswith("madtp-triton-") and not temp.exists()  # its temp folder is gone
