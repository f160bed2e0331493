"""A load client on tritonclient's asyncio gRPC API. It runs in the serving venv (tritonclient pins
protobuf<7, which the base venv cannot hold): `python -m madtp_deploy.serve.client JOB.json OUT.json`.

JOB: {"url": "127.0.0.1:8001", "model": "image", "concurrency": 16, "max_seconds": 30,
      "requests": [{"IMAGE": {"datatype": "BYTES", "b64": ["...", ...]}}, ...],
      "keep_outputs": true}
An input is BYTES items (base64, shape [n, 1] unless "shape" says otherwise) or numbers ({"datatype": "FP32", "shape": [...],
"values": [...]}) for requests of the wrong type. OUT: per request in order {"error", "latency_s",
"outputs": {name: nested lists}} (unsent ones: error "not sent: time bound"), and the wall time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time

import numpy as np

NUMPY = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


def _inputs(request: dict):
    from tritonclient.grpc import InferInput

    out = []
    for name, spec in request.items():
        if spec["datatype"] == "BYTES":
            arr = np.array([base64.b64decode(b) for b in spec["b64"]], dtype=object).reshape(spec.get("shape", (-1, 1)))
        else:
            arr = np.asarray(spec["values"], dtype=NUMPY[spec["datatype"]]).reshape(spec["shape"])
        t = InferInput(name, list(arr.shape), spec["datatype"])
        t.set_data_from_numpy(arr)
        out.append(t)
    return out


async def run_job(job: dict) -> dict:
    from tritonclient.grpc.aio import InferenceServerClient
    from tritonclient.utils import InferenceServerException

    requests = job["requests"]
    results: list[dict | None] = [None] * len(requests)
    deadline = time.monotonic() + job.get("max_seconds", 60)
    keep = job.get("keep_outputs", True)
    queue = list(range(len(requests)))[::-1]
    client = InferenceServerClient(job["url"])
    try:
        async def worker():
            while queue and time.monotonic() < deadline:
                i = queue.pop()
                t0 = time.perf_counter()
                try:
                    r = await client.infer(job["model"], _inputs(requests[i]))
                    outs = {o.name: r.as_numpy(o.name).tolist() for o in r.get_response().outputs} if keep else {}
                    results[i] = {"error": None, "latency_s": time.perf_counter() - t0, "outputs": outs}
                except InferenceServerException as exc:
                    results[i] = {"error": exc.message(), "latency_s": time.perf_counter() - t0, "outputs": {}}

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(job.get("concurrency", 1))))
        wall = time.perf_counter() - t0
    finally:
        await client.close()
    results = [r or {"error": "not sent: time bound", "latency_s": None, "outputs": {}} for r in results]
    return {"wall_s": wall, "results": results}


def main(argv: list[str]) -> int:
    job_path, out_path = argv
    with open(job_path) as f:
        job = json.load(f)
    out = asyncio.run(run_job(job))
    with open(out_path, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def b64(items: list[bytes]) -> dict:
    """A BYTES input of a job: the items as base64 (shape [n, 1])."""
    return {"datatype": "BYTES", "b64": [base64.b64encode(b).decode() for b in items]}


def run_in_venv(job: dict, venv=None, timeout_s: float = 600.0) -> dict:
    """Run a job with the serving venv's interpreter (where tritonclient lives) -> its OUT."""
    import subprocess
    import tempfile
    from pathlib import Path

    from .server import ServeError, default_venv, venv_python

    with tempfile.TemporaryDirectory(prefix="madtp-client-") as d:
        job_path, out_path = Path(d) / "job.json", Path(d) / "out.json"
        job_path.write_text(json.dumps(job))
        p = subprocess.run([str(venv_python(venv or default_venv())), "-m", "madtp_deploy.serve.client",
                            str(job_path), str(out_path)], capture_output=True, text=True, timeout=timeout_s)
        if p.returncode != 0:
            raise ServeError(f"load client failed ({p.stderr.strip().splitlines()[-1:] or p.returncode}); fix: run "
                             f"`make serve-env`")
        return json.loads(out_path.read_text())
