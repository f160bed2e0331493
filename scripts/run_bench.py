"""`make bench`: the default benchmarks, recorded in docs/BENCHMARKS.md from their JSON.

Every run puts dense, reference (max-keep), padded invariant and packed side by side (and, for
the shipped model, the static fixed-capacity graph) on the same images, interleaved call by call:
1. the shipped model (batch 1, 8, 32; torch and onnxruntime);
2. the ViT-B/16 geometry at a 50% image-GFLOPs target and
3. the ViT-L/14-336 geometry (the paper's CLIP) at the same target (onnxruntime; batch 1 and 8),
4. BLIP retrieval's image encoder (ViT-B/16 at 384 px) at the same target (onnxruntime; 1 and 8):
   OpenAI CLIP / Salesforce BLIP shapes with seeded random weights (no pretrained weights can be downloaded here),
   the temperature searched with the training controller until the per-instance image GFLOPs are
   within 2% of half the dense count. Timing depends on the keep counts, not on what the weights learned;
5. the whole BLIP NLVR2 graph (two images and a statement) at the paper's geometry (seeded random
   weights, the temperature of run 4; onnxruntime, batch 1 and 8) and at the tiny one (T 5).
Run `python scripts/run_bench.py --only NAME` for one of them, `--docs-only` to rewrite the docs.
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
CACHE = ROOT / "export" / ".bench"


def geometry_checkpoint(spec: str, reduce: float = 0.5) -> Path:
    """A checkpoint of `spec` (seeded random weights; CLIP or BLIP retrieval) whose temperature removes
    `reduce` of the dense image GFLOPs on the bench's images, found with the training controller."""
    import madtp_deploy
    from madtp_deploy.benchmark.runner import bench_images, image_gflops
    from madtp_deploy.train import control

    path = CACHE / f"{spec}-p{reduce}.pt"
    if path.exists():
        return path.relative_to(ROOT)  # records name it relative to the repository
    m = madtp_deploy.load(spec, mode="invariant")
    px = bench_images(m, None, 8)
    dense = float(image_gflops(m.spec, torch.full((1, m.spec.vision_layers), m.spec.vision_tokens), False)[0])

    def at(t: float) -> float:
        m.temperature = t
        with torch.inference_mode():
            kept = torch.cat([m.encode_image(px[i:i + 1]).kept for i in range(len(px))])
        cur = float(image_gflops(m.spec, kept, True).mean())
        print(f"  {spec} T {t:.3f}: {cur:.2f} GFLOPs (target {dense * (1 - reduce):.2f}, dense {dense:.2f})", flush=True)
        return cur

    m.temperature, _ = control.search_temperature(at, 1.0, dense * (1 - reduce), dense, tol=0.02, max_iter=30)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": m.state_dict(), "epoch": 0, "temperature": m.temperature, "spec": m.spec.to_dict()}, path)
    return path.relative_to(ROOT)


def run(name: str, args: list[str]) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    js = OUT / f"{name}.json"
    cmd = CLI + args + ["--json", str(js), "--markdown", str(OUT / f"{name}.md"), "--plot", str(OUT / f"{name}.png")]
    print("$", " ".join(["madtp-deploy", "bench"] + cmd[len(CLI):]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(js.read_text())


def _command(cfg: dict) -> str:
    """The recorded BenchConfig as the command line that reproduces it (repository-relative)."""
    model = cfg["model"]  # export/.bench/*.pt: made by scripts/run_bench.py:geometry_checkpoint
    args = ["madtp-deploy bench", f"--batch-sizes {','.join(map(str, cfg['batch_sizes']))}",
            f"--variants {','.join(cfg['variants'])}"]
    if cfg.get("temperature") is not None:
        args.append(f"--temperature {cfg['temperature']:g}")
    if cfg.get("backends"):
        args.append(f"--backend {','.join(cfg['backends'])}")
    args += [f"--warmup-s {cfg['warmup_s']:g}", f"--min-runs {cfg['min_runs']}", f"--pool {cfg['pool']}",
             f"--model {model}"]
    return " ".join(args)


RUNS = ("shipped", "vit-b16-p0.5", "vit-l14-336-p0.5", "blip-retrieval-p0.5", "blip-nlvr-t1.55", "blip-nlvr-tiny")


def main() -> None:
    every = "dense,reference,invariant,packed"
    want = [sys.argv[sys.argv.index("--only") + 1]] if "--only" in sys.argv else list(RUNS)
    if "--docs-only" in sys.argv:  # rewrite BENCHMARKS.md from the recorded JSON, run nothing
        want = []
    for name in want:
        if name == "shipped":
            args = ["--batch-sizes", "1,8,32", "--variants", every + ",static", "--backend", "torch,ort"]
        elif name == "vit-b16-p0.5":
            args = ["--model", str(geometry_checkpoint("clip-vit-b16")), "--batch-sizes", "1,8,32",
                    "--variants", every, "--backend", "torch,ort", "--warmup-s", "2", "--min-runs", "5"]
        elif name == "vit-l14-336-p0.5":
            args = ["--model", str(geometry_checkpoint("clip-vit-l14-336")), "--batch-sizes", "1,8",
                    "--variants", every, "--backend", "ort", "--warmup-s", "1", "--min-runs", "3", "--pool", "16"]
        elif name == "blip-retrieval-p0.5":  # BLIP's ViT-B/16 at 384 px (577 tokens): the image encoder
            args = ["--model", str(geometry_checkpoint("blip-retrieval")), "--batch-sizes", "1,8",
                    "--variants", every, "--backend", "ort", "--warmup-s", "1", "--min-runs", "3", "--pool", "16"]
        elif name == "blip-nlvr-t1.55":  # the paper's NLVR2 geometry: two 384 px images, 12 + 12 layers
            args = ["--model", "blip-nlvr", "--temperature", "1.55", "--batch-sizes", "1,8", "--variants", every,
                    "--backend", "ort", "--warmup-s", "0", "--min-runs", "3", "--pool", "16"]
        elif name == "blip-nlvr-tiny":  # the whole NLVR2 graph (two images + statement), tiny geometry
            args = ["--model", "blip-nlvr-tiny", "--temperature", "5", "--batch-sizes", "1,8,32", "--variants", every,
                    "--backend", "torch,ort"]
        else:
            raise SystemExit(f"--only {name}: unknown; one of {', '.join(RUNS)}")
        run(name, args)
    sections = []
    for name in RUNS:  # every recorded run, also those not re-run this time
        if (OUT / f"{name}.md").exists():
            md = (OUT / f"{name}.md").read_text()
            sections.append(f"### {name}\n\n`{_command(json.loads((OUT / f'{name}.json').read_text())['config'])}`"
                            f"\n\n{md}\n![{name}](bench/{name}.png)\n")
    from madtp_deploy.files import write_section

    write_section(ROOT / "docs" / "BENCHMARKS.md", "bench", "\n".join(sections))


if __name__ == "__main__":
    main()
