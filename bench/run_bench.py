"""`make bench`: the default benchmarks, recorded in docs/BENCHMARKS.md from their JSON.

1. the shipped model (batch 1, 8, 32; every backend available here);
2. a ViT-B/16 geometry at a 50% image-GFLOPs target: OpenAI CLIP ViT-B/16 shapes with seeded random
   weights (no pretrained weights can be downloaded here), the temperature searched with the
   training controller until the per-instance image GFLOPs are within 2% of half the dense count.
   Timing depends on the keep counts, not on what the weights learned.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "bench"
CLI = [sys.executable, "-m", "madtp_deploy.cli", "bench"]


def vitb_checkpoint(path: Path, reduce: float = 0.5) -> Path:
    import madtp_deploy
    from madtp_deploy import flops
    from madtp_deploy.bench.runner import bench_images
    from madtp_deploy.train import control

    if path.exists():
        return path
    m = madtp_deploy.load("clip-vit-b16", mode="invariant")
    px = bench_images(m, None, 8)
    dense = float(flops.image_flops(m.spec, flops.dense_image_kept(m.spec), False).gflops)
    target, m.temperature = dense * (1 - reduce), 1.0
    for _ in range(30):
        with torch.no_grad():
            kept = torch.cat([m.encode_image(px[i:i + 1]).kept for i in range(len(px))])
        cur = float(flops.image_flops(m.spec, kept, True).gflops.mean())
        print(f"  T {m.temperature:.3f}: {cur:.2f} GFLOPs (target {target:.2f}, dense {dense:.2f})")
        if abs(cur - target) / dense < 0.02:
            break
        m.temperature = control.next_temperature(m.temperature, cur, target, dense)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": m.state_dict(), "epoch": 0, "temperature": m.temperature,
                "spec": m.spec.to_dict()}, path)
    return path


def run(name: str, args: list[str]) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    js = OUT / f"{name}.json"
    cmd = CLI + args + ["--json", str(js), "--markdown", str(OUT / f"{name}.md"), "--plot", str(OUT / f"{name}.png")]
    print("$", " ".join(["madtp-deploy", "bench"] + cmd[len(CLI):]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(js.read_text())


def _command(cfg: dict) -> str:
    """The recorded BenchConfig as the command line that reproduces it."""
    args = ["madtp-deploy bench", f"--model {Path(cfg['model']).name if '/' in cfg['model'] else cfg['model']}",
            f"--batch-sizes {','.join(map(str, cfg['batch_sizes']))}", f"--mode {cfg['mode']}"]
    if cfg.get("backends"):
        args.append(f"--backend {','.join(cfg['backends'])}")
    args += [f"--warmup-s {cfg['warmup_s']:g}", f"--min-runs {cfg['min_runs']}"]
    return " ".join(args)


def main() -> None:
    # torch.compile runs in its own process: inductor's worker threads slow onnxruntime down when
    # they share one (measured: ORT dense batch 8 took 11.6 ms beside it, 7.4 ms without).
    runs = {"shipped": ["--batch-sizes", "1,8,32", "--mode", "invariant", "--backend", "torch,ort"],
            "shipped-torch-compile": ["--batch-sizes", "1,8,32", "--mode", "invariant", "--backend",
                                      "torch,torch-compile"]}
    if "--docs-only" in sys.argv:  # rewrite BENCHMARKS.md from the recorded JSON, run nothing
        runs = {}
    if "--shipped-only" not in sys.argv and "--docs-only" not in sys.argv:
        ckpt = vitb_checkpoint(ROOT / "export" / ".bench" / "clip-vit-b16-p0.5.pt")
        runs["vit-b16-p0.5"] = ["--model", str(ckpt), "--batch-sizes", "1,8,32", "--mode", "invariant",
                                "--backend", "torch,ort", "--warmup-s", "3", "--min-runs", "5"]
    for name, args in runs.items():
        run(name, args)
    sections = []
    for name in ("shipped", "shipped-torch-compile", "vit-b16-p0.5"):  # every recorded run, also those not re-run this time
        if (OUT / f"{name}.md").exists():
            md = (OUT / f"{name}.md").read_text()
            sections.append(f"### {name}\n\n`{_command(json.loads((OUT / f'{name}.json').read_text())['config'])}`"
                            f"\n\n{md}\n![{name}](bench/{name}.png)\n")
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    start, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    (ROOT / "docs" / "BENCHMARKS.md").write_text(head + start + "\n" + "\n".join(sections) + end + tail)


if __name__ == "__main__":
    main()
