"""Run under torchrun by test_distributed.py: for each job, train part of the way (--max-steps), keep a
copy of that mid-epoch last.pt (for a resume with another world size), then resume to the end.

usage: torchrun --nproc-per-node 2 ddp_worker.py JOBS.json   (a list of {"family", "config"})"""

import json
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from madtp_deploy.train import blip_nlvr, blip_retrieval, clip, loop

HOOKS = {"clip": clip.HOOKS, "blip-retrieval": blip_retrieval.HOOKS, "blip-nlvr": blip_nlvr.HOOKS}


def main(jobs_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # one group for every job: the loop uses it and leaves it open
    for job in json.loads(Path(jobs_file).read_text()):
        cfg, hooks = job["config"], HOOKS[job["family"]]
        out = Path(cfg["output"])
        loop.train(loop.TrainConfig(**cfg, max_steps=job["stop"]), hooks, log=lambda *_: None)
        if dist.get_rank() == 0:
            (out.parent / f"{out.name}-mid").mkdir()
            shutil.copy(out / loop.LAST, out.parent / f"{out.name}-mid" / loop.LAST)
        dist.barrier()
        loop.train(loop.TrainConfig(**cfg, resume=True), hooks, log=lambda *_: None)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
