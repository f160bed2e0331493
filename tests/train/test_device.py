"""`train --device`: the process group's backend for the device, the data moved to it, the refusal
where torch sees no CUDA, and (on a GPU only) a CUDA run that trains as the CPU run."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from madtp_deploy.errors import UsageError
from madtp_deploy.train import blip_nlvr, blip_retrieval, clip, loop


def test_the_backend_follows_the_device():
    """Bug caught: NCCL asked to reduce CPU tensors (it has no CPU collectives), or gloo for GPU ones."""
    assert loop.backend_for("cpu") == "gloo" and loop.backend_for("cuda") == "nccl"


def test_every_tensor_of_the_data_moves():
    """Bug caught: a tuple of tensors (BLIP NLVR2's control set) left on the CPU while the model is on
    the GPU; non-tensor fields touched."""
    d = SimpleNamespace(n=3, pixels=torch.ones(3, 2), ctrl=(torch.ones(2), torch.zeros(2)), name="x")
    out = loop.to_device(d, torch.device("meta"))
    assert out.pixels.is_meta and all(t.is_meta for t in out.ctrl) and (out.n, out.name) == (3, "x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees CUDA here: the refusal is for machines without")
def test_cuda_without_a_gpu_is_one_clear_error(tmp_path):
    """Bug caught: --device cuda on a CPU-only torch failing deep inside torch (a traceback), or an
    unknown device accepted."""
    for device in ("cuda", "tpu"):
        with pytest.raises(UsageError, match=f"--device {device}"):
            loop.TrainConfig(data=str(tmp_path), output=str(tmp_path / "out"), device=device).validate()
    r = subprocess.run([sys.executable, "-m", "madtp_deploy.cli", "train", "--data", str(tmp_path), "--output",
                        str(tmp_path / "out"), "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--device cuda" in r.stderr
    assert not (tmp_path / "out").exists()


FAMILIES = {"clip": (clip.HOOKS, "clip-tiny-test", "tiny_scenes"),
            "blip-retrieval": (blip_retrieval.HOOKS, "blip-retrieval-tiny", "tiny_scenes"),
            "blip-nlvr": (blip_nlvr.HOOKS, "blip-nlvr-tiny", "tiny_nlvr")}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the CUDA training path "
                                                          "(and NCCL under torchrun) is not run here")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_cuda_run_trains_as_the_cpu_run(request, tmp_path, family):
    """Bug caught (on a GPU): a tensor of the loop, the loss or the GFLOPs count left on the other device,
    or a CUDA run that trains something else (weights, controller path)."""
    hooks, init, fixture = FAMILIES[family]
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = loop.TrainConfig(data=str(request.getfixturevalue(fixture)), output=str(tmp_path / device), init=init,
                               reduce=0.3, epochs=1, batch_size=8, lr=1e-4, control_every=1, mode="invariant",
                               max_steps=4, device=device)
        loop.train(cfg, hooks, log=lambda *_: None)
        runs[device] = torch.load(tmp_path / device / loop.LAST, map_location="cpu", weights_only=False)
    for k, v in runs["cpu"]["model"].items():
        torch.testing.assert_close(runs["cuda"]["model"][k], v, rtol=1e-3, atol=1e-3, msg=k)
    assert [h["temperature"] for h in runs["cuda"]["history"]] == pytest.approx(
        [h["temperature"] for h in runs["cpu"]["history"]], rel=1e-3)
