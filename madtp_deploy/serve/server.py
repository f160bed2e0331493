"""Start the Triton Inference Server that PyPI's nvidia-pytriton wheel bundles, from the serving venv.

The wheel ships a real `tritonserver` (2.51) with the python backend only. It runs a standard model
repository when (measured, ../shared/docs/deploy-facts.md "Serving"): the backend directory holds
`python/` with libtriton_python.so, triton_python_backend_utils.py and the stub of this Python
version copied from the wheel; LD_LIBRARY_PATH holds the wheel's libraries and this interpreter's
LIBDIR (else the stub loads another libpython); the venv's bin comes first on PATH (else the stub
cannot import its packages). The server writes a file into $TMPDIR and leaves it: it gets a private
TMPDIR, removed on exit. Bound to 127.0.0.1; free ports unless given.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import MadtpError

VENV_ENV = "MADTP_SERVE_VENV"


class ServeError(MadtpError):
    """The serving venv, the repository or the server itself cannot be used."""


def default_venv() -> Path:
    """$MADTP_SERVE_VENV, else .venv-serve beside the package's checkout (what `make serve-env` makes)."""
    env = os.environ.get(VENV_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".venv-serve"


def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def _site_packages(venv: Path) -> Path:
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(venv) / "lib" / ver / "site-packages"


def find_triton(venv: Path) -> dict[str, Path]:
    """The wheel's server binary, libraries, python backend and stub in `venv`; ServeError naming the fix."""
    venv = Path(venv)
    site = _site_packages(venv)
    root = site / "pytriton" / "tritonserver"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = {"binary": root / "bin" / "tritonserver", "libs": site / "nvidia_pytriton.libs",
             "backend": root / "backends" / "python", "stub": root / "python_backend_stubs" / ver /
             "triton_python_backend_stub", "python": venv_python(venv)}
    missing = [f"{k} ({p})" for k, p in paths.items() if not p.exists()]
    if missing:
        raise ServeError(f"serving venv {venv}: {', '.join(missing)} missing; fix: run `make serve-env` (or set "
                         f"{VENV_ENV} to a venv with nvidia-pytriton==0.7.0 for Python {ver})")
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shm_segments() -> set[str]:
    """The python backend's shared-memory regions (what a crashed server would leave in /dev/shm)."""
    try:
        return {p.name for p in Path("/dev/shm").iterdir() if "triton" in p.name}
    except OSError:
        return set()


class TritonServer:
    """`with TritonServer(repo) as s:` starts the server, waits until it is ready, stops it on exit
    (SIGTERM, then SIGKILL of its process group after `stop_timeout_s`) and removes its temp folder."""

    def __init__(self, repository: Path, *, models: list[str] | None = None, venv: Path | None = None,
                 http_port: int | None = None, grpc_port: int | None = None, metrics_port: int | None = None,
                 log_file: Path | None = None, ready_timeout_s: float = 120.0, stop_timeout_s: float = 30.0):
        self.repository = Path(repository).resolve()
        manifest = self.repository / "repository.json"
        if not manifest.is_file():
            raise ServeError(f"--repository {repository}: no repository.json; fix: write one with "
                             f"`madtp-deploy serve-repo --output {repository}`")
        self.manifest = json.loads(manifest.read_text())
        self.models = list(models or self.manifest["load"])
        unknown = [m for m in self.models if m not in self.manifest["load"]]
        if unknown:
            raise ServeError(f"model(s) {', '.join(unknown)}: not served from {repository} on this machine; fix: "
                             f"use {', '.join(self.manifest['load'])}")
        self.venv = Path(venv or default_venv()).resolve()
        self.paths = find_triton(self.venv)
        self.ports = {"http": http_port or free_port(), "grpc": grpc_port or free_port(),
                      "metrics": metrics_port or free_port()}
        self.log_file, self.ready_timeout_s, self.stop_timeout_s = log_file, ready_timeout_s, stop_timeout_s
        self.proc: subprocess.Popen | None = None
        self._workdir: Path | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def workdir(self) -> Path:
        """The server's private folder (backends, TMPDIR, log): exists between start() and stop()."""
        if self._workdir is None:
            raise ServeError("tritonserver: not started; fix: call start() first")
        return self._workdir

    @property
    def process(self) -> subprocess.Popen:
        if self.proc is None:
            raise ServeError("tritonserver: not started; fix: call start() first")
        return self.proc

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def command(self) -> list[str]:
        cmd = [str(self.workdir / "bin" / "tritonserver"), f"--model-repository={self.repository}",
               f"--backend-directory={self.workdir / 'backends'}", "--model-control-mode=explicit",
               "--strict-readiness=true", "--exit-on-error=true", "--disable-auto-complete-config", "--log-verbose=0",
               "--http-address=127.0.0.1", f"--http-port={self.ports['http']}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.ports['grpc']}",
               "--metrics-address=127.0.0.1", f"--metrics-port={self.ports['metrics']}", "--allow-gpu-metrics=false"]
        return cmd + [f"--load-model={m}" for m in self.models]

    def env(self) -> dict:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.paths["libs"]), libdir,
                                                               env.get("LD_LIBRARY_PATH")]))
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env["TMPDIR"] = str(self.workdir / "tmp")
        env["VIRTUAL_ENV"] = str(self.venv)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env

    def _prepare(self) -> None:
        """A private folder: the backend directory (copied, not linked), the binary's TMPDIR."""
        self._workdir = Path(tempfile.mkdtemp(prefix="madtp-triton-"))
        py = self.workdir / "backends" / "python"
        py.mkdir(parents=True)
        for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(self.paths["backend"] / f, py / f)
        shutil.copy2(self.paths["stub"], py / "triton_python_backend_stub")
        (self.workdir / "bin").mkdir()
        os.symlink(self.paths["binary"], self.workdir / "bin" / "tritonserver")
        (self.workdir / "tmp").mkdir()

    def start(self) -> "TritonServer":
        self._prepare()
        log = open(self.log_file or self.workdir / "server.log", "ab")
        try:
            # its own session: a terminal's Ctrl-C reaches us, and we stop the server in order
            self.proc = subprocess.Popen(self.command(), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.wait_ready()
        return self

    def log_tail(self, n: int = 15) -> str:
        path = self.log_file or (self._workdir / "server.log" if self._workdir else None)
        if path is None:
            return ""
        try:
            return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self) -> None:
        end = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < end:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise ServeError(f"tritonserver exited with code {self.process.returncode} before it was ready "
                                 f"(log: {tail[-1500:]}); fix: see the log above")
            if self.ready():
                return
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise ServeError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s (log: {tail[-1500:]}); fix: "
                         f"see the log, or raise the timeout")

    def stop(self) -> int | None:
        """SIGTERM (the server drains and unloads its models), SIGKILL of the group if it hangs; the temp
        folder is removed. Safe to call twice."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            try:  # the stubs are in the server's process group: none may outlive it
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            rc = self.proc.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return rc

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def statistics(self) -> dict:
        """Triton's statistics API (per model: request, inference and execution counts, batch stats)."""
        with urllib.request.urlopen(f"{self.http_url}/v2/models/stats", timeout=10) as r:
            return json.loads(r.read())
