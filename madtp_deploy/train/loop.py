"""The one training loop of every model family: `train(cfg, hooks)`.

A family brings its `TrainHooks` (train/clip.py, train/blip_nlvr.py, train/blip_retrieval.py): how to
read its data, its loss on a batch, its per-instance GFLOPs (what the temperature controller steers),
its epoch-end metrics and its checkpoint files. The loop owns everything else, alike for all:

- order: each epoch's order is a permutation from a torch.Generator seeded by (seed, epoch), never the
  global RNG; randomness inside a step (BLIP's hard negatives) draws from a generator seeded by
  (seed, step). A run is a function of its config, whatever the process did before.
- the cosine learning rate (a function of the step), AdamW, `--max-steps`, progress;
- the temperature controller (train/control.py): the initial search, then after every control
  interval (or each epoch) toward `gflops_dense x (1 - reduce)`;
- checkpoints, written atomically: the family's model files (madtp.pt, ...) each epoch, and `last.pt`
  with model, optimizer, step, temperature, history, RNG states and the position inside the epoch.
  `resume` continues from it and ends with the uninterrupted run's weights, bit for bit;
- distributed data parallel under torchrun (WORLD_SIZE > 1 in the environment): see `Dist`.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import CheckpointError, MadtpError, UsageError
from ..files import atomic, remove_stale_temps
from ..models.inputs import check_batch_size, check_number
from ..modes import SERVING_DEFAULT, parse_mode
from . import control

LAST = "last.pt"


@dataclass
class TrainConfig:
    data: str
    output: str
    init: str = "madtp-clip-deep"
    reduce: float = 0.0            # fraction of GFLOPs to remove; 0 = dense training
    epochs: int = 5
    batch_size: int = 64           # the global batch (all processes together under torchrun)
    lr: float = 5e-4
    min_lr: float = 0.0
    warmup: int = 0                # steps of linear learning-rate warm-up before the cosine
    weight_decay: float = 0.2
    align_weight: float = 0.1
    mode: str = SERVING_DEFAULT.value  # batch semantics during training and GFLOPs control
    control_every: int = 0         # steps between temperature updates; 0 = once per epoch (reference)
    ramp: int = 0                  # epochs over which the GFLOPs target falls from dense to its final value; 0 = none
    max_steps: int = 0             # stop early (tests); 0 = no limit
    pretrained: str | None = None  # BLIP NLVR2: a pre-trained BLIP checkpoint that initialises --init (hooks.pretrained)
    distill: str | None = None     # a teacher model (frozen) whose similarity logits the student also matches (CLIP)
    distill_weight: float = 1.0    # the distillation term's weight beside the task loss
    seed: int = 0
    resume: bool = False
    tokenizer: str | None = None   # the family's tokenizer (file or folder); default: the dataset's
    device: str = "cpu"            # cpu, or cuda: under torchrun cuda:LOCAL_RANK and NCCL (see `Dist`)

    def validate(self) -> "TrainConfig":
        """Every field in range, or a UsageError naming the CLI option and the fix."""
        num = check_number
        num(self.reduce, "--reduce", lo=0.0, hi=0.99, error=UsageError,
            fix="a fraction of GFLOPs to remove in [0, 0.99], e.g. --reduce 0.5 (0 = dense training)")
        num(self.epochs, "--epochs", lo=1, hi=100000, integer=True, error=UsageError,
            fix="at least one epoch, e.g. --epochs 5")
        check_batch_size(self.batch_size, "--batch-size", error=UsageError)
        num(self.lr, "--lr", lo=0.0, hi=1.0, lo_open=True, error=UsageError, fix="a learning rate in (0, 1], e.g. --lr 5e-4")
        num(self.warmup, "--warmup", lo=0, integer=True, error=UsageError,
            fix="warm-up steps >= 0, e.g. --warmup 500 (0 = none)")
        num(self.min_lr, "min_lr", lo=0.0, hi=self.lr, error=UsageError, fix="0 <= min_lr <= lr")
        num(self.weight_decay, "--wd", lo=0.0, hi=10.0, error=UsageError, fix="a weight decay in [0, 10], e.g. --wd 0.2")
        num(self.distill_weight, "--distill-weight", lo=0.0, hi=100.0, error=UsageError,
            fix="a weight in [0, 100], e.g. --distill-weight 1")
        num(self.align_weight, "align_weight", lo=0.0, error=UsageError, fix="a weight >= 0, e.g. 0.1")
        num(self.control_every, "--control-every", lo=0, integer=True, error=UsageError,
            fix="steps between temperature updates >= 0 (0 = once per epoch)")
        num(self.ramp, "--ramp", lo=0, hi=self.epochs, integer=True, error=UsageError,
            fix=f"epochs of target ramp in [0, --epochs {self.epochs}], e.g. --ramp 4 (0 = the final target at once)")
        num(self.max_steps, "--max-steps", lo=0, integer=True, error=UsageError, fix="a step count >= 0 (0 = no limit)")
        num(self.seed, "--seed", lo=0, hi=2**32 - 1, integer=True, error=UsageError, fix="an integer seed >= 0")
        self.mode = parse_mode(self.mode, "--mode").value
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"--device {self.device}: unknown; fix: --device cpu or --device cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False); fix: "
                             "run on a GPU machine with a CUDA build of torch, or --device cpu")
        return self


@dataclass(frozen=True)
class TrainHooks:
    """What a family brings to the loop. `data` is whatever `prepare` returns; it must have `n` (training
    examples: the rows the loop orders and batches) and `n_ctrl` (instances of the GFLOPs control set)."""
    title: str                                             # "CLIP", "BLIP NLVR2", ...: messages
    prepare: Callable[[TrainConfig, Any, Callable], Any]   # (cfg, model, log) -> data; checks the model fits
    loss: Callable[..., dict]                              # (model, data, rows, cfg, step: Step) -> {"loss": total, term: tensor}
    gflops: Callable[[Any, Any, list], torch.Tensor]       # (model, data, control rows) -> [n] GFLOPs per instance
    write_model: Callable[[Any, Path, int, dict], None]    # (model, out, epoch, meta) -> the family's model files
    metrics: Callable[[Any, Any], dict] | None = None      # (model, data) -> epoch-end metrics (result, model.json)
    summary: Callable[[dict], str] | None = None           # metrics -> a piece of the epoch's log line
    after_step: Callable[[Any], None] | None = None        # (model) after each optimizer step (clamps)
    pretrained: Callable[[Any, Path], dict] | None = None  # (model, checkpoint) -> counts: init from a pre-trained model
    distills: bool = False                                 # `prepare` loads cfg.distill and `loss` uses it
    unit: str = "GFLOPs/pair"
    outputs: tuple[str, ...] = ("madtp.pt", "model.json")  # the model files (their stale temporaries are removed)


# -- distributed data parallel -----------------------------------------------------------------------

class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient times `scale` (see `Step.gather`)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


@dataclass
class Dist:
    """The process's place in a torchrun job (world 1 = a plain run, which never touches torch.distributed).

    Each global batch (the same rows, in the same seeded order, as a one-process run) is split across
    the processes as a DistributedSampler splits a dataset: process r takes rows r, r + W, r + 2W, ...
    Gradients are averaged by DistributedDataParallel, so every hook writes its loss as this process's
    share of the GLOBAL batch mean (`Step.share`); batch-wide terms (contrastive losses, hard negatives)
    are computed on all-gathered rows (`Step.gather`, whose gradients reach the rows' owners)."""
    world: int = 1
    rank: int = 0
    owned: bool = False   # this loop called init_process_group (and destroys it at the end)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # the model's, the batches'

    @classmethod
    def from_env(cls, device: str = "cpu") -> "Dist":
        """device "cpu": gloo; "cuda": this process's GPU (cuda:LOCAL_RANK, as torchrun numbers them on a
        node) and NCCL, whose collectives take tensors on that GPU (`sum`, `max`, `gather` move them)."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        dev = torch.device("cpu")
        if device == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0) if world > 1 else 0)
            torch.cuda.set_device(dev)
        if world <= 1:
            return cls(device=dev)
        import torch.distributed as dist

        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group(backend=backend_for(device))
        return cls(dist.get_world_size(), dist.get_rank(), owned, dev)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        return rows[self.rank::self.world]

    def sizes(self, n: int) -> list[int]:
        return [len(range(r, n, self.world)) for r in range(self.world)]

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return x
        import torch.distributed as dist

        y = x.to(self.device, copy=True)
        dist.all_reduce(y)
        return y.to(x.device)

    def max(self, x: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return x
        import torch.distributed as dist

        y = x.to(self.device, copy=True)
        dist.all_reduce(y, op=dist.ReduceOp.MAX)
        return y.to(x.device)

    def mean_gflops(self, g: torch.Tensor) -> float:
        """The mean over every process's control instances (one process: the plain mean)."""
        if self.world == 1:
            return float(g.mean())
        s = self.sum(torch.stack([g.double().sum(), torch.tensor(float(len(g)), dtype=torch.float64, device=g.device)]))
        return float(s[0] / s[1])

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class Step:
    """What a loss hook gets beside its rows: the step's generator and the distributed helpers."""
    index: int
    generator: torch.Generator      # seeded by (seed, step): the same draws in every process and after resume
    dist: Dist = field(default_factory=Dist)
    rows: int = 0                   # rows of the global batch (all processes)

    @property
    def sizes(self) -> list[int]:
        return self.dist.sizes(self.rows)

    def gather(self, x: torch.Tensor, pad_value=0) -> torch.Tensor:
        """This process's rows -> the global batch's rows, in the one-process order; every other dim
        padded to the largest among the processes with `pad_value`. One process: `x` itself.

        Gradients: every process computes the same batch-wide term from the gathered rows, and gets its
        gradient for its own rows only (the other processes' rows are constants here); its own rows
        carry that gradient times the world size, so that DDP's average over the processes gives the
        one-process gradient (as torch.distributed.nn.functional.all_gather's summing backward does,
        without collectives inside backward, whose order could differ between processes)."""
        d = self.dist
        if d.world == 1:
            return x
        import torch.distributed as dist

        most = max(self.sizes)
        shape = d.max(torch.tensor([most, *x.shape[1:]]))
        pad = []
        for have, want in zip(reversed(x.shape), reversed(shape.tolist())):
            pad += [0, want - have]
        x = torch.nn.functional.pad(x, pad, value=pad_value) if any(pad) else x
        parts = [torch.empty_like(x) for _ in range(d.world)]
        dist.all_gather(parts, x.detach().contiguous())  # x lives on d.device: the model's output
        if x.requires_grad:
            parts[d.rank] = _ScaleGrad.apply(x, float(d.world))
        p = torch.arange(self.rows)  # global row p is row p // W of process p % W (`Dist.shard`)
        return torch.cat(parts)[(p % d.world) * most + p // d.world]

    def share(self, mean: torch.Tensor, rows: int, total: int | None = None) -> torch.Tensor:
        """A mean over this process's `rows` -> its share of the mean over `total` global rows (default:
        the batch), so that DDP's average over processes gives the one-process loss. One process: `mean`."""
        if self.dist.world == 1:
            return mean
        return mean * (rows * self.dist.world / (total or self.rows))

    def local(self, global_rows: torch.Tensor) -> torch.Tensor:
        """Global batch rows -> their positions among this process's rows, or -1 (another process's)."""
        w, r = self.dist.world, self.dist.rank
        return torch.where(global_rows % w == r, global_rows // w, torch.full_like(global_rows, -1))


class _Forward(torch.nn.Module):
    """The loss hook as a module, so that DistributedDataParallel sees the forward it synchronises."""

    def __init__(self, model, loss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, *args):
        return self.loss(self.model, *args)


def backend_for(device: str) -> str:
    """The process group's backend: NCCL for GPU tensors, gloo for CPU ones."""
    return "nccl" if device == "cuda" else "gloo"


def to_device(data, device: torch.device):
    """Every tensor of the family's data (a namespace of tensors and tuples of tensors) on `device`."""
    if device.type == "cpu":
        return data
    for k, v in vars(data).items():
        if isinstance(v, torch.Tensor):
            setattr(data, k, v.to(device))
        elif isinstance(v, tuple) and all(isinstance(t, torch.Tensor) for t in v):
            setattr(data, k, tuple(t.to(device) for t in v))
    return data


# -- order, schedule, checkpoints ----------------------------------------------------------------------

def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a function of (seed, epoch) only, so a resumed run sees it again."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1000003 + step) % 2**63)


def cosine_lr(lr: float, min_lr: float, step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up from 0 over the first `warmup` steps, then cosine from lr to min_lr over the rest."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def save_atomic(obj, path: Path) -> None:
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def read_last(path: Path) -> dict:
    """last.pt, or a CheckpointError naming it (truncated by a kill, or not ours)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the file's
        raise CheckpointError(f"{path}: not a readable resume checkpoint ({type(exc).__name__}); fix: delete it "
                              f"to start over, or resume from a complete copy") from exc
    need = ("model", "optimizer", "temperature", "epoch", "step", "history")
    if not isinstance(state, dict) or any(k not in state for k in need):
        raise CheckpointError(f"{path}: not a resume checkpoint of `madtp-deploy train` (needs {', '.join(need)}); "
                              f"fix: delete it to start over")
    return state


def _fits_batches(n: int, batch_size: int, world: int) -> None:
    last = n % batch_size or batch_size
    if world > 1 and min(batch_size, n, last) < world:
        raise UsageError(f"--batch-size {batch_size}: with {n} training rows a batch of {min(last, n)} rows cannot "
                         f"give each of the {world} processes one; fix: a --batch-size that leaves every batch "
                         f"(the last too) at least {world} rows, or fewer processes")


# -- the loop ------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, hooks: TrainHooks, log=print, progress=None) -> dict:
    """Train `cfg.init` on `cfg.data` with the family's hooks; return {gflops_dense, gflops_target,
    gflops_current, temperature, history, **the family's last metrics}."""
    from ..api import load

    cfg.validate()
    dist = Dist.from_env(cfg.device)
    try:
        return _train(cfg, hooks, dist, log if dist.main else (lambda *_: None), progress if dist.main else None, load)
    finally:
        dist.close()


def _train(cfg: TrainConfig, hooks: TrainHooks, dist: Dist, log, progress, load) -> dict:
    seed_everything(cfg.seed)
    out = Path(cfg.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MadtpError(f"{out}: cannot create the output folder ({exc.strerror}); fix: pass --output DIR") from exc
    if dist.main:
        remove_stale_temps(out, (*hooks.outputs, LAST))  # a killed run's half-written temporaries, never a final file
    state = read_last(out / LAST) if cfg.resume and (out / LAST).exists() else None
    model = load(cfg.init, mode=cfg.mode)
    if cfg.pretrained and state is None:
        if hooks.pretrained is None:
            raise UsageError(f"--pretrained: {hooks.title} trains from --init alone; fix: drop --pretrained (it "
                             f"initialises BLIP NLVR2 from a pre-trained BLIP)")
        n = hooks.pretrained(model, Path(cfg.pretrained))
        log(f"initialised {n['loaded']} tensors from {cfg.pretrained}; {n['new']} new (merge layers, head), "
            f"{n['ignored']} not used")
    if cfg.distill and not hooks.distills:
        raise UsageError(f"--distill: {hooks.title} training has no distillation term; fix: drop --distill (CLIP only)")
    model = model.to(dist.device)
    data = to_device(hooks.prepare(cfg, model, log), dist.device)
    _fits_batches(data.n, cfg.batch_size, dist.world)
    ctrl = list(range(dist.rank, data.n_ctrl, dist.world))

    def measure() -> float:
        return dist.mean_gflops(hooks.gflops(model, data, ctrl))

    model.eval()
    model.temperature = 0.0
    dense = cur = measure()
    target = dense * (1 - cfg.reduce)
    model.temperature = 1.0 if cfg.reduce > 0 else 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, start_batch, step, history = 0, 0, 0, []
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{out / LAST}: does not fit this run ({str(exc).splitlines()[0][:160]}); "
                                  f"fix: resume with the same --init, or delete it to start over") from exc
        model.temperature, step, history = state["temperature"], state["step"], state["history"]
        start_epoch, start_batch = state["epoch"], state.get("batch", 0)
        if start_batch == 0:  # saved at the end of an epoch (older files too): the next one starts
            start_epoch += 1
        if "rng" in state:
            set_rng_states(state["rng"])
        cur = state.get("gflops_current", cur)
        log(f"resumed from {out / LAST} at epoch {start_epoch}, step {step}")
    elif cfg.reduce > 0 and cfg.ramp:  # the target starts at dense: so does the model, the controller takes it down
        model.temperature = 0.0
        log(f"target ramp: dense {dense:.5f} -> {target:.5f} over {cfg.ramp} epochs")
    elif cfg.reduce > 0:  # the reference's calculate_temperature: search an initial T before training
        def at(t: float) -> float:
            model.temperature = t
            return measure()

        model.temperature, cur = control.search_temperature(at, model.temperature, target, dense)
        log(f"initial temperature {model.temperature:.3f} (GFLOPs {cur:.5f}, target {target:.5f})")

    forward: torch.nn.Module = _Forward(model, hooks.loss)
    if dist.world > 1:
        # every process starts from the same weights (load is seeded; resume reads one file); DDP checks it
        gpu = [dist.device.index] if dist.device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(forward, device_ids=gpu, find_unused_parameters=True)

    def save_last(epoch: int, batch: int) -> None:
        """batch = 0: epoch complete; else the next batch of `epoch` to run (in global batches)."""
        if dist.main:
            save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "temperature": model.temperature,
                         "epoch": epoch, "batch": batch, "step": step, "history": history, "rng": rng_states(),
                         "gflops_current": cur, "config": asdict(cfg)}, out / LAST)

    metrics: dict = {}

    def write_model(epoch: int) -> None:
        nonlocal metrics
        metrics = hooks.metrics(model, data) if hooks.metrics else {}
        if dist.main:
            hooks.write_model(model, out, epoch, {"config": asdict(cfg), "epoch": epoch, "gflops_dense": dense,
                                                  "gflops_target": target, "gflops_current": cur, **metrics,
                                                  "temperature": model.temperature})

    steps_per_epoch = math.ceil(data.n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch

    def goal() -> float:  # the GFLOPs target now (the final one unless --ramp)
        return control.ramp_target(dense, target, step, cfg.ramp * steps_per_epoch)

    task = progress.add_task("train", total=total, completed=step) if progress else None
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = epoch_order(cfg.seed, epoch, data.n)
        first = start_batch if epoch == start_epoch else 0
        stopped = False
        for b in range(first, steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = cosine_lr(cfg.lr, cfg.min_lr, step, total, cfg.warmup)
            rows = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            ctx = Step(step, step_generator(cfg.seed, step), dist, len(rows))
            terms = forward(data, dist.shard(rows), cfg, ctx)
            loss = terms["loss"]
            logged = {k: v.detach() for k, v in terms.items()}
            if dist.world > 1:  # every process's share summed: the global batch's loss and terms
                names = list(logged)
                logged = dict(zip(names, dist.sum(torch.stack([logged[k] for k in names])) / dist.world))
            if not torch.isfinite(logged["loss"]):
                raise MadtpError(f"{cfg.data}: training loss became {logged['loss'].item()} at step {step}; fix: "
                                 f"lower --lr (now {cfg.lr:g}) or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if hooks.after_step:
                hooks.after_step(model)
            step += 1
            if cfg.reduce > 0 and cfg.control_every and step % cfg.control_every == 0:
                model.eval()
                cur = measure()
                model.temperature = control.next_temperature(model.temperature, cur, goal(), dense)
                model.train()
            history.append({"step": step, **{k: v.item() for k, v in logged.items()},
                            "temperature": model.temperature})
            if progress:
                progress.update(task, advance=1, description=f"ep {epoch} loss {history[-1]['loss']:.3f} "
                                f"GFLOPs {cur:.4f}/{goal():.4f} T {model.temperature:.2f}")
            if cfg.max_steps and step >= cfg.max_steps and b + 1 < steps_per_epoch:
                stopped = True
                break
        model.eval()
        if stopped:  # mid-epoch: the position is saved, the epoch-end control is left to the resumed run
            save_last(epoch, b + 1)
            write_model(epoch)
            log(f"stopped at step {step} (--max-steps), mid-epoch {epoch}; continue with --resume")
            break
        cur = measure()
        if cfg.reduce > 0 and not cfg.control_every and epoch + 1 < cfg.epochs:
            model.temperature = control.next_temperature(model.temperature, cur, goal(), dense)
            cur = measure()
        write_model(epoch)
        save_last(epoch, 0)
        summary = hooks.summary(metrics) if hooks.summary and metrics else ""
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f}{summary}, {hooks.unit} {cur:.5f} (target {goal():.5f}, "
            f"dense {dense:.5f}), T {model.temperature:.3f}")
        if cfg.max_steps and step >= cfg.max_steps:
            break
    if not metrics and hooks.metrics:  # a resumed run that had nothing left to do
        metrics = hooks.metrics(model, data)
    dist.barrier()  # no process returns (and no caller reads the files) before process 0 wrote them
    return {"gflops_dense": dense, "gflops_target": target, "gflops_current": cur, "temperature": model.temperature,
            **metrics, "history": history}
