"""The calibration report (`make calibration-report`): INT8 (and ModelOpt INT8 / FP8) against fp32,
recorded in docs/bench/calibration.json and rendered into the "Calibration" sections of docs/RESULTS.md
and docs/BENCHMARKS.md.

1. the shipped model (both encoders): recall@1 on the generated test split, per-instance GFLOPs,
   the share of (instance, layer) keep counts equal to fp32's, for each quantization recipe;
   onnxruntime CPU latency of the image encoder at batch 1, 8, 32 (fp32 / int8 calls interleaved);
2. the ViT-B/16 geometry (spec clip-vit-b16, seeded random weights, temperature 1.2: about half
   the dense image GFLOPs), image encoder: keep-count agreement, GFLOPs and latency.

Every graph is the served one (packed, `SERVING_DEFAULT`) unless `Where.mode` says otherwise.
Calibration samples come from the val split; accuracy is measured on the test split.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .. import files
from ..modes import SERVING_DEFAULT
from . import compare
from .quantize import QuantConfig, modelopt_available
from .run import calibrate

# The calibration study's model: docs/bench/calibration.json was measured on the 4-layer model that shipped
# before issue 21 (it stays in assets/ as the test model); re-run `make calibration-report` to move it.
MODEL = "shipped-tiny"


@dataclass(frozen=True)
class Where:
    """The files a report run reads and writes, under a repository root; the graphs' batch mode."""
    root: Path
    mode: str = SERVING_DEFAULT.value

    @property
    def out(self) -> Path:
        return self.root / "calibration"

    @property
    def rec(self) -> Path:
        return self.root / "docs" / "bench" / "calibration.json"

    @property
    def scenes(self) -> Path:
        return self.out / ".work" / "scenes"

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root.resolve()))

# name -> (QuantConfig fields, what it is)
RECIPES = {
    "int8-all": (dict(quantize_pruning_path=True, float_copy=False, float_stem=False),
                 "every MatMul and the patch-embedding Conv quantized (onnxruntime's placement)"),
    "int8-all-copy": (dict(quantize_pruning_path=True, float_stem=False),
                      "as int8-all, but the score ops read float copies of shared tensors"),
    "int8-excl": (dict(float_copy=False, float_stem=False), "pruning-path MatMuls excluded (kept in float)"),
    "int8-excl-copy": (dict(float_stem=False), "excluded + the path reads float copies, never shared Q/DQ"),
    "int8": ({}, "excluded + float copies + patch embedding in float (the default)"),
    "int8-feeders": (dict(exclude_feeders=True), "default + the attention in_proj (makes q, k) in float"),
    "int8-perchannel": (dict(per_channel=True), "default, per-channel weight scales"),
    "int8-entropy": (dict(method="entropy"), "default, entropy calibration"),
    "int8-percentile": (dict(method="percentile"), "default, percentile (99.999) calibration"),
    "int8-percentile-scoreminmax": (dict(method="percentile", score_minmax=True),
                                    "percentile, but tensors entering the path keep their min/max range"),
    "int8-modelopt": (dict(quantizer="modelopt"), "ModelOpt INT8 (max calibration, fp32 high precision), "
                                                  "default exclusions"),
    "fp8-modelopt": (dict(quantizer="modelopt", precision="fp8"),
                     "ModelOpt FP8 (E4M3) Q/DQ, default exclusions; onnxruntime CPU emulates it (DQ, fp32 math)"),
}
VITB_RECIPES = ("int8-all", "int8", "int8-feeders")
LATENCY_RECIPES = ("int8-all", "int8", "int8-feeders")


log = partial(print, flush=True)  # a report run's progress, as it happens


def load_record(w: Where) -> dict:
    return json.loads(w.rec.read_text()) if w.rec.exists() else {}


def save_record(w: Where, rec: dict) -> None:
    w.rec.parent.mkdir(parents=True, exist_ok=True)
    w.rec.write_text(json.dumps(rec, indent=1))


def machine() -> dict:
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    flags = Path("/proc/cpuinfo").read_text()
    return {"cpu": cpu, "cores": os.cpu_count(), "vnni": "avx512_vnni" in flags,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "load_avg_1min_at_start": round(os.getloadavg()[0], 1),
            "shared": "The CPU was shared with 4 other agents' builds, tests and training runs"}


def fp32_exports(w: Where, model: str, encoders, temperature=None) -> dict:
    """Export once per report run (a fixed reference for every recipe), under clean names."""
    import shutil

    import madtp_deploy

    from madtp_deploy.onnx.export import cached_export

    m = madtp_deploy.load(model, mode=w.mode, temperature=temperature)
    paths = cached_export(m, w.out / ".work", m.spec.name, tuple(encoders), source=model, log=log)
    fixed = w.out / ".work" / f"fp32-{w.mode}"
    fixed.mkdir(parents=True, exist_ok=True)
    out = {}
    for e, p in paths.items():
        out[e] = fixed / f"{m.spec.name}.{e}.onnx"
        shutil.copyfile(p, out[e])
        shutil.copyfile(p.with_suffix(".json"), out[e].with_suffix(".json"))
    return out


def shipped(w: Where, rec: dict) -> None:
    import madtp_deploy

    from madtp_deploy.quant.calibset import ensure_scenes

    ensure_scenes(w.scenes, log)
    spec = madtp_deploy.load(MODEL).spec
    split, pixels, ids, mask = compare.retrieval_inputs(spec, w.scenes, "test")
    fp32_paths = fp32_exports(w, MODEL, ("image", "text"))
    results, fp32 = {}, None
    for name, (fields, what) in RECIPES.items():
        cfg = QuantConfig(**fields)
        if cfg.quantizer == "modelopt" and modelopt_available():
            results[name] = {"what": what, "error": f"not run: {modelopt_available()} (make modelopt-env)"}
            continue
        log(f"[shipped] {name}: {what}")
        t0 = time.perf_counter()
        try:
            out = [calibrate(onnx=fp32_paths[e], samples=128, split="val", data=w.scenes, output=w.out, name=name,
                             cfg=cfg, log=log)[0] for e in ("image", "text")]
        except Exception as exc:  # noqa: BLE001 - record why a recipe does not work, keep going
            results[name] = {"what": what, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            log(f"  failed: {results[name]['error']}")
            continue
        q = {r["info"]["encoder"]: r for r in out}
        if fp32 is None:
            fp32 = compare.retrieval(spec, split, pixels, ids, mask, q["image"]["fp32_onnx"], q["text"]["fp32_onnx"])
            r, img, txt = fp32
            results["fp32"] = {"what": "fp32 ONNX (reference)", **r,
                               "files": {e: w.rel(q[e]["fp32_onnx"]) for e in q},
                               "keep_image": compare.keep_agreement(img["kept"], img["kept"]),
                               "keep_text": compare.keep_agreement(txt["kept"], txt["kept"])}
        r, img, txt = compare.retrieval(spec, split, pixels, ids, mask, q["image"]["onnx"], q["text"]["onnx"])
        qi = q["image"]["info"]["quantization"]
        results[name] = {
            "what": what, **r, "seconds": round(time.perf_counter() - t0, 1),
            "keep_image": compare.keep_agreement(fp32[1]["kept"], img["kept"]),
            "keep_text": compare.keep_agreement(fp32[2]["kept"], txt["kept"]),
            "embed_cosine_image": compare.cosine(fp32[1]["embeds"], img["embeds"]),
            "embed_cosine_text": compare.cosine(fp32[2]["embeds"], txt["embeds"]),
            "image_quantized_nodes": len(qi["quantized_nodes"]), "image_excluded": len(qi["excluded_nodes"]),
            "float_copy_rewired": {e: q[e]["info"]["quantization"]["float_copy_rewired_inputs"] for e in q},
            "files": {e: w.rel(q[e]["onnx"]) for e in q},
        }
        k = results[name]["keep_image"]["equal_share"], results[name]["keep_text"]["equal_share"]
        log(f"  R@1 txt {r['txt_r1']:.1f} img {r['img_r1']:.1f}; keep equal image {k[0]:.3f} text {k[1]:.3f}")
    rec["shipped"] = {"recipes": results, "test_images": len(pixels), "test_captions": len(ids),
                      "noise_floor": noise_floor(fp32_paths["image"], pixels),
                      "calibration": "128 samples from the val split (seeded draw), per encoder"}
    save_record(w, rec)

    shipped_latency(w, rec)


def shipped_latency(w: Where, rec: dict) -> None:
    import madtp_deploy

    spec = madtp_deploy.load(MODEL).spec
    _, pixels, _, _ = compare.retrieval_inputs(spec, w.scenes, "test")
    results = rec["shipped"]["recipes"]
    b = {bs: [pixels[(i * bs + np.arange(bs)) % len(pixels)] for i in range(4)] for bs in (1, 8, 32)}
    paths = {"fp32": w.root / results["fp32"]["files"]["image"]}
    paths.update({n: w.root / results[n]["files"]["image"] for n in LATENCY_RECIPES if "files" in results.get(n, {})})
    log("[shipped] latency (image encoder), interleaved")
    lat = {}
    for bs, rounds in ((1, 60), (8, 30), (32, 12)):
        lat.update(compare.time_interleaved(paths, {bs: b[bs]}, rounds, warmup=3, log=log))
    rec["shipped"]["latency"] = {str(k): v for k, v in lat.items()}
    save_record(w, rec)


def vitb(w: Where, rec: dict) -> None:
    import madtp_deploy

    from madtp_deploy.quant.calibset import ensure_scenes

    ensure_scenes(w.scenes, log)
    spec = madtp_deploy.load("clip-vit-b16").spec
    from madtp_deploy.data import dataset

    test = dataset.load(w.scenes, "test")
    pixels = test.pixels(spec.image_size, range(64)).numpy()
    fp32_paths = fp32_exports(w, "clip-vit-b16", ("image",), temperature=1.2)
    res, kept32 = {}, None
    for name in VITB_RECIPES:
        fields, what = RECIPES[name]
        log(f"[vit-b16] {name}: {what}")
        t0 = time.perf_counter()
        out = calibrate(onnx=fp32_paths["image"], samples=32, split="val", data=w.scenes, output=w.out, name=name,
                        cfg=QuantConfig(**fields), log=log)[0]
        secs = round(time.perf_counter() - t0, 1)
        if kept32 is None:
            ref = compare.run_all(compare.session(out["fp32_onnx"]), {"pixels": pixels}, batch=8)
            kept32 = ref["kept"]
            res["fp32"] = {"what": "fp32 ONNX (reference)", "gflops_image": compare.image_gflops(spec, kept32),
                           "file": w.rel(out["fp32_onnx"])}
        q = compare.run_all(compare.session(out["onnx"]), {"pixels": pixels}, batch=8)
        res[name] = {"what": what, "seconds": secs, "gflops_image": compare.image_gflops(spec, q["kept"]),
                     "keep_image": compare.keep_agreement(kept32, q["kept"]),
                     "embed_cosine_image": compare.cosine(ref["embeds"], q["embeds"]),
                     "file": w.rel(out["onnx"]),
                     "quantized_nodes": len(out["info"]["quantization"]["quantized_nodes"]),
                     "excluded": len(out["info"]["quantization"]["excluded_nodes"])}
        log(f"  keep equal {res[name]['keep_image']['equal_share']:.3f}, GFLOPs {res[name]['gflops_image']:.2f}")
    from .. import flops

    dense = float(flops.image_flops(spec, flops.dense_image_kept(spec), False).gflops)
    rec["vitb16"] = {"recipes": res, "images": len(pixels), "temperature": 1.2, "gflops_dense_image": dense,
                     "noise_floor": noise_floor(fp32_paths["image"], pixels),
                     "calibration": "32 samples from the val split (64 px scenes resized to 224)"}
    save_record(w, rec)
    vitb_latency(w, rec)


def vitb_latency(w: Where, rec: dict, rounds=((1, 12), (8, 6), (32, 3))) -> None:
    import madtp_deploy
    from madtp_deploy.data import dataset

    spec = madtp_deploy.load("clip-vit-b16").spec
    pixels = dataset.load(w.scenes, "test").pixels(spec.image_size, range(64)).numpy()
    res = rec["vitb16"]["recipes"]
    paths = {k: w.root / v["file"] for k, v in res.items()}
    b = {bs: [pixels[(i * bs + np.arange(bs)) % len(pixels)] for i in range(2)] for bs in (1, 8, 32)}
    log("[vit-b16] latency, interleaved")
    lat = {}
    for bs, n in rounds:
        lat.update(compare.time_interleaved(paths, {bs: b[bs]}, n, warmup=1, log=log))
    rec["vitb16"]["latency"] = {str(k): v for k, v in lat.items()}
    rec["vitb16"].setdefault("latency_runs", []).append({
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),  # when it ended
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "timed_calls": {str(b): n for b, n in rounds},
        "median_ms": {str(b): {k: v["median_ms"] for k, v in row.items()} for b, row in lat.items()}})
    save_record(w, rec)


def noise_floor(fp32_image: Path, pixels: np.ndarray, seed: int = 0) -> dict:
    """Keep agreement of fp32 with itself when every pixel moves by up to half an 8-bit step
    (uniform, in raw pixel units, then normalised): how fragile the decisions are before any
    quantization of the network."""
    from madtp_deploy.data.retrieval import CLIP_STD

    step = (1 / 255) / np.array(CLIP_STD, dtype=np.float32)[None, :, None, None]
    noisy = pixels + (np.random.default_rng(seed).random(pixels.shape, dtype=np.float32) - 0.5) * step
    sess = compare.session(fp32_image)
    a = compare.run_all(sess, {"pixels": pixels}, batch=8)["kept"]
    b = compare.run_all(sess, {"pixels": noisy.astype(np.float32)}, batch=8)["kept"]
    return compare.keep_agreement(a, b)


def noise_floors(w: Where, rec: dict) -> None:
    import madtp_deploy
    from madtp_deploy.data import dataset

    test = dataset.load(w.scenes, "test")
    for key, model, n in (("shipped", MODEL, None), ("vitb16", "clip-vit-b16", 64)):
        spec = madtp_deploy.load(model).spec
        px = test.pixels(spec.image_size, range(n or len(test.images))).numpy()
        rec[key]["noise_floor"] = noise_floor(w.out / ".work" / f"fp32-{w.mode}" / f"{spec.name}.image.onnx", px)
        log(f"[{key}] noise floor: keep equal {rec[key]['noise_floor']['equal_share']:.3f}")
    save_record(w, rec)


def _pct(x):
    return f"{100 * x:.1f}%"


# -- docs ----------------------------------------------------------------------------------------

def _delta(r: dict, f: dict) -> tuple[float, float]:
    return r["txt_r1"] - f["txt_r1"], r["img_r1"] - f["img_r1"]


def results_md(rec: dict) -> str:
    sh = rec.get("shipped", {})
    s = sh.get("recipes", {})
    out = ["## Calibration: INT8 / FP8 against fp32 (issue 13)", "",
           "Produced by `make calibration-report` (scripts/calibration_report.py; record "
           "docs/bench/calibration.json). Calibration: 128 samples per encoder (32 for ViT-B/16) drawn with a "
           "fixed seed from the generated **val** split: calibrating on the test split would flatter the "
           "result. Recall on the 500-image **test** split (1000 captions) with onnxruntime (CPU) running both "
           "encoders. *Keep equal* = share of (instance, layer) keep counts equal to the fp32 ONNX's on the "
           "same inputs. GFLOPs = 2 per multiply-add, per instance, from each graph's own `kept` output.", "",
           "The pruning path is found by data flow (`madtp_deploy.quant.graph.find_pruning_path`), not by "
           "names: backwards from the TopK nodes and the integer `kept` output, stopping at dense layers; "
           "per layer it holds QK and attn·V (their probabilities feed SA and CA), MAG's q_map and "
           "A = q·space_dictᵀ (they serve only the decision), the threshold's Pᵀ·TIS and the package token's "
           "TIS-weighted sum, plus every non-MatMul op between them and the decisions. onnxruntime "
           "static quantization, QDQ, uint8 activations / int8 weights, MatMul/Gemm/Conv.", ""]
    if s:
        f = s.get("fp32", {})
        nf = sh.get("noise_floor")
        out += ["### Shipped model (madtp-clip-tiny, T 2.46), both encoders", "",
                "| recipe | txt R@1 | img R@1 | Δ txt / img R@1 | GFLOPs/pair | keep equal, image | keep equal, text | "
                "ops quantized (image) | embed cos (image) |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r in s.items():
            if "error" in r:
                out.append(f"| {name} | not run: {r['error']} | | | | | | | |")
                continue
            dt, di = _delta(r, f)
            out.append(f"| {name} | {r['txt_r1']:.1f} | {r['img_r1']:.1f} | {dt:+.1f} / {di:+.1f} | "
                       f"{r['gflops_pair']:.4f} | {_pct(r['keep_image']['equal_share'])} | "
                       f"{_pct(r['keep_text']['equal_share'])} | {r.get('image_quantized_nodes', '-')} | "
                       f"{r.get('embed_cosine_image', 1.0):.4f} |")
        if nf:
            out.append(f"| *fp32, pixels moved by < half an 8-bit step* | | | | | {_pct(nf['equal_share'])} | | | |")
        out += ["", "Recipes: " + "; ".join(f"`{k}`: {v['what']}" for k, v in s.items() if k != "fp32") + ".", ""]
    v = rec.get("vitb16", {}).get("recipes", {})
    if v:
        vb = rec["vitb16"]
        out += [f"### ViT-B/16 geometry (clip-vit-b16, seeded random weights, T {vb['temperature']}), image "
                f"encoder, {vb['images']} test images", "",
                f"Dense image GFLOPs {vb['gflops_dense_image']:.2f}. Calibration: {vb['calibration']}. Random "
                f"weights: recall means nothing here; keep agreement and GFLOPs do.", "",
                "| recipe | GFLOPs/image | keep equal | instances with every layer equal | mean abs Δkept | "
                "embed cos |", "|---|---|---|---|---|---|"]
        for name, r in v.items():
            if "keep_image" not in r:
                out.append(f"| {name} | {r['gflops_image']:.2f} | 100% | 100% | 0 | 1.0000 |")
                continue
            k = r["keep_image"]
            out.append(f"| {name} | {r['gflops_image']:.2f} | {_pct(k['equal_share'])} | "
                       f"{_pct(k['instances_all_equal'])} | {k['mean_abs_diff']:.2f} | {r['embed_cosine_image']:.4f} |")
        if vb.get("noise_floor"):
            k = vb["noise_floor"]
            out.append(f"| *fp32, pixels moved by < half an 8-bit step* | | {_pct(k['equal_share'])} | "
                       f"{_pct(k['instances_all_equal'])} | {k['mean_abs_diff']:.2f} | |")
        out.append("")
    out += targets_md(rec)
    return "\n".join(out)


def _gflops_gap(v: dict) -> str:
    f = v["recipes"]["fp32"]["gflops_image"]
    gaps = [abs(r["gflops_image"] - f) / f for n, r in v["recipes"].items() if n not in ("fp32", "int8-all")]
    return _pct(max(gaps)) if gaps else "?"


def targets_md(rec: dict) -> list[str]:
    s = rec.get("shipped", {}).get("recipes", {})
    v = rec.get("vitb16", {})
    if "int8" not in s or "fp32" not in s:
        return []
    d, f = s["int8"], s["fp32"]
    dt, di = _delta(d, f)
    worst = min(dt, di)
    ki, kt = d["keep_image"]["equal_share"], d["keep_text"]["equal_share"]
    best = max((r["keep_image"]["equal_share"], n) for n, r in s.items() if "keep_image" in r and n != "fp32")
    nf = rec["shipped"].get("noise_floor", {}).get("equal_share")
    rows = ["### Targets (issue 13), default recipe `int8`", "",
            "| target | measured | verdict |", "|---|---|---|",
            f"| INT8 loses <= 1 point recall@1 (shipped, test split) | txt {dt:+.1f}, img {di:+.1f} points | "
            f"{'**met**' if worst >= -1 else f'**missed** by {-1 - worst:.1f}'} |",
            f"| >= 95% of (instance, layer) keep counts equal, pruning path in float | image {_pct(ki)}, text "
            f"{_pct(kt)} (shipped); best image recipe `{best[1]}` {_pct(best[0])}"
            + (f"; ViT-B/16 {_pct(v['recipes']['int8']['keep_image']['equal_share'])}" if "int8" in v.get("recipes", {}) else "")
            + f" | {_keep_verdict(ki, kt, best)} |"]
    runs = [r["median_ms"]["8"] for r in v.get("latency_runs", []) if "int8" in r["median_ms"].get("8", {})]
    if runs:
        ratios = [r["int8"] / r["fp32"] for r in runs]
        met = sum(x <= 0.6 for x in ratios)
        verdict = ("**met**" if met == len(ratios) else f"**missed** by {max(ratios) - 0.6:.2f}x" if not met else
                   f"met in {met} of {len(ratios)} runs (worst {max(ratios):.2f}x): **not reliably met** on this "
                   "shared machine")
        rows.append("| INT8 <= 0.6x fp32 latency, batch 8, ViT-B/16 (onnxruntime CPU) | "
                    + ", ".join(f"{x:.2f}x" for x in ratios) + " in the timing runs (docs/BENCHMARKS.md) | "
                    + verdict + " |")
    rows.append("")
    if nf is not None:
        rows += [f"Why the image keep counts miss: the decisions are fragile before any quantization. Moving "
                 f"every input pixel by less than half an 8-bit step (uniform noise, the fp32 graph unchanged) "
                 f"already leaves only {_pct(nf)} of the shipped model's image keep counts equal"
                 + (f" ({_pct(v['noise_floor']['equal_share'])} at ViT-B/16)" if v.get("noise_floor") else "")
                 + ": many tokens sit within a hair of the threshold θ, and every one that crosses it changes a "
                 "count. INT8 perturbs the residual stream more than that, in every layer; what the recipes "
                 "buy is measured above: excluding the path, the float copies, the float patch embedding and "
                 "keeping in_proj (q, k) in float each remove a share of the flips, none all of them. The text "
                 "tower (16 tokens, little pruning) meets the target. Recall does not move beyond the test "
                 "split's noise (one image is 0.2 points of txt R@1, one caption 0.1 of img R@1): the flipped "
                 "tokens are the marginal ones."
                 + (" At ViT-B/16 (random weights, a flat score distribution) "
                    + ", ".join(f"`{n}` keeps {_pct(r['keep_image']['equal_share'])}"
                                for n, r in v["recipes"].items() if "keep_image" in r)
                    + f" equal against a noise floor of {_pct(v['noise_floor']['equal_share'])}, while its "
                    f"per-instance GFLOPs stay within {_gflops_gap(v)} of fp32's and only quantizing the path "
                    "itself (`int8-all`) breaks the pruning (keep counts jump, GFLOPs nearly double)."
                    if v.get("noise_floor") and v.get("recipes") else ""), ""]
    return rows


def _keep_verdict(image: float, text: float, best: tuple[float, str], target: float = 0.95) -> str:
    def one(name: str, share: float) -> str:
        return f"{name} **met**" if share >= target else f"{name} **missed** by {100 * (target - share):.1f} points"

    out = f"{one('text', text)}; {one('image', image)}"
    if image < target:
        out += f" ({'met' if best[0] >= target else f'{100 * (target - best[0]):.1f}'} with `{best[1]}`)"
    return out


def benchmarks_md(rec: dict) -> str:
    m = rec.get("machine", {})
    out = ["## Calibration: onnxruntime CPU latency, fp32 vs INT8 (issue 13)", "",
           f"`make calibration-report`. Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
           f"AVX-512 VNNI {'yes' if m.get('vnni') else 'no'}, onnxruntime {m.get('onnxruntime', '?')}. "
           f"**{m.get('shared', '')}** (load average {m.get('load_avg_1min_at_start', '?')} on "
           f"{m.get('cores', '?')} cores when the timing started): absolute times are noisy; the variants' calls were interleaved "
           "(fp32, int8-all, int8, int8-feeders, fp32, ...) in one process so that a slow stretch hits all of "
           "them, and the ratios are the result. Median of the timed calls; pruned graphs "
           f"({rec.get('mode', 'invariant')} mode) on real scene images. Recipes as in docs/RESULTS.md (Calibration).", "",
           "What caps the INT8 gain in the default recipe: the pruning path stays fp32. At ViT-B/16 per token and "
           "layer, MAG's q_map is one width x width product beside the 12 width^2 of in_proj, out_proj and "
           "the MLP (1/13, about 8% of the MACs) and QK plus attn·V are 2N·width (about 4% at N = 197, less after "
           "pruning): roughly a tenth of the work never reaches the int8 kernels (onnxruntime fuses the rest "
           "into QLinearMatMul on AVX-512 VNNI). `int8-feeders` moves in_proj back to fp32 as well. `int8-all` "
           "quantizes everything and is the fastest per token, but on ViT-B/16 it breaks the pruning (GFLOPs "
           "nearly double, docs/RESULTS.md), which is why its batch 8 ratio is the worst. The shipped model "
           "(width 128) is too small for INT8 to pay: per-node overhead, not arithmetic, dominates there.", ""]
    for key, title in (("vitb16", "ViT-B/16 geometry (T 1.2), image encoder"),
                       ("shipped", "Shipped model, image encoder")):
        lat = rec.get(key, {}).get("latency")
        if not lat:
            continue
        names = list(next(iter(lat.values())))
        out += [f"### {title}", "", "| batch | " + " | ".join(f"{n} ms" for n in names) + " | " +
                " | ".join(f"{n} / fp32" for n in names if n != "fp32") + " | fp32 p10-p90 ms | timed calls each |",
                "|---" * (2 * len(names) + 2) + "|"]
        for b, row in lat.items():
            out.append(f"| {b} | " + " | ".join(f"{row[n]['median_ms']:.1f}" for n in names) + " | " +
                       " | ".join(f"{row[n]['median_ms'] / row['fp32']['median_ms']:.2f}x" for n in names if n != "fp32")
                       + f" | {row['fp32']['p10_ms']:.1f}-{row['fp32']['p90_ms']:.1f} | {row['fp32']['runs']} |")
        out.append("")
        runs = rec.get(key, {}).get("latency_runs", [])
        if len(runs) > 1:
            out += ["Every timing run of this geometry (int8 / fp32 median ratio per batch; the spread is the "
                    "shared machine's):", "", "| run ended (UTC) | load (1 min) then | " + " | ".join(f"batch {b}" for b in lat) + " |",
                    "|---" * (2 + len(lat)) + "|"]
            for r in runs:
                out.append(f"| {r['utc']} | {r.get('load_avg_1min', '?')} | " + " | ".join(
                    f"{r['median_ms'][b]['int8'] / r['median_ms'][b]['fp32']:.2f}x" if b in r["median_ms"] else "-"
                    for b in lat) + " |")
            out.append("")
    return "\n".join(out)


def write_section(doc: Path, text: str) -> None:
    files.write_section(doc, "calibration", text)


def main(args: set[str], root: Path) -> None:
    """args: --shipped-only | --vitb-only | --docs-only | --latency | --noise (see the script)."""
    w = Where(Path(root))
    rec = load_record(w)
    if "--noise" in args:  # the noise floors only, from the fp32 exports of the last full run
        noise_floors(w, rec)
    elif "--latency" in args:  # re-time only (e.g. when the machine is quieter), longer for ViT-B
        rec["machine"] = machine()
        shipped_latency(w, rec)
        vitb_latency(w, rec, rounds=((1, 20), (8, 12), (32, 5)))
    elif "--docs-only" not in args:
        rec["machine"] = machine()
        rec["mode"] = w.mode
        if "--vitb-only" not in args:
            shipped(w, rec)
        if "--shipped-only" not in args:
            vitb(w, rec)
    write_section(w.root / "docs" / "RESULTS.md", results_md(rec))
    write_section(w.root / "docs" / "BENCHMARKS.md", benchmarks_md(rec))


# -- the compound table (issue 23): token pruning x INT8, from one `bench` run -----------------------

COMPOUND = {"dense": "dense fp32", "packed": "packed fp32", "invariant": "padded fp32", "invariant-int8": "padded INT8",
            "packed-int8": "packed INT8", "static-int8": "static INT8"}


def compound_md(bench: dict, backend: str = "ort") -> str:
    """One row per batch size: each variant's median ms, its speedup over dense fp32 and its eff/own
    GFLOPs, and packed INT8 against packed fp32, from one bench report (the calls interleaved)."""
    rows = [r for r in bench["results"] if r["backend"] == backend and "error" not in r]
    names = [v for v in bench["model"]["variants"] if any(r["variant"] == v for r in rows)]
    by = {(r["variant"], r["batch"]): r for r in rows}
    both = "packed" in names and "packed-int8" in names
    out = ["| batch | " + " | ".join(f"{COMPOUND.get(v, v)}: ms, x dense, eff/own" for v in names)
           + (" | packed INT8 / packed fp32 |" if both else " |"),
           "|---" * (1 + len(names) + both) + "|"]
    for b in sorted({r["batch"] for r in rows}):
        d = by.get(("dense", b))
        cells = []
        for v in names:
            r = by.get((v, b))
            if r is None:
                cells.append("-")
                continue
            speed = f", {d['median_ms'] / r['median_ms']:.2f}x" if d and v != "dense" else ""
            cells.append(f"{r['median_ms']:.1f}{speed}, {r['eff_over_own']:.2f}")
        if both:
            p, q = by.get(("packed", b)), by.get(("packed-int8", b))
            cells.append(f"{p['median_ms'] / q['median_ms']:.2f}x" if p and q else "-")
        out.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(out)
