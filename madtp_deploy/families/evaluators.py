"""Each family's `eval`: load the split and its tokenizer, evaluate, and the rows the CLI prints.
Named by the registry (families/clip.py, blip.py) and imported only when `eval` runs."""

from __future__ import annotations

RECALL_KEYS = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")


def evaluate_clip(model, data, split: str, batch_size: int, tokenizer=None, method: str = "madtp", match=None,
                  log=None, gallery: int | None = None, **_) -> dict:
    """Retrieval recall both ways, GFLOPs per pair and kept tokens on a dataset split; `method` a peer
    (tome, topk, lowres) on the model's weights at the knob matched to the MADTP model `match`;
    `gallery` recall within consecutive folds of that many images."""
    from ..data import dataset
    from ..evaluate import evaluate as run

    s = dataset.load(data, split)
    r = run(model, s, dataset.tokenizer_for(data, model.spec, tokenizer), batch_size, method=method, match=match,
            log=log, gallery=gallery)
    r["split"] = str(s.annotation)
    return r


def clip_report(r: dict) -> tuple[list[str], list[list[str]], list[str]]:
    columns = [*RECALL_KEYS, "GFLOPs/pair", "reduction"]
    rows = [[f"{r[k]:.2f}" for k in RECALL_KEYS] + [f"{r['gflops_per_pair']:.4f}",
                                                      f"{100 * r['gflops_reduction']:.1f}%"]]
    notes = []
    if r["gallery"] < r["images"]:
        notes.append(f"recall within {r['images'] // r['gallery']} galleries of {r['gallery']} images (averaged)")
    if r.get("method", "madtp") != "madtp":
        return columns, rows, [*notes, f"{r['method']} on the model's weights, knob {r['knob']}"]
    return columns, rows, [*notes, f"kept image tokens per layer: {[round(v, 1) for v in r['kept_image_per_layer']]}"]


def evaluate_retrieval(model, data, split: str, batch_size: int, tokenizer=None, k: int = 16, **_) -> dict:
    """Recall by ITC and after ITM re-ranking of the top k, GFLOPs per pair (ITC) and per re-ranked pair."""
    from ..data import dataset
    from ..train.blip_retrieval import evaluate, tokenizer_for

    s = dataset.load(data, split)
    r = evaluate(model, s, tokenizer_for(data, model.spec, tokenizer), batch_size, k)
    r["split"], r["k"] = str(s.annotation), k
    return r


def retrieval_report(r: dict) -> tuple[list[str], list[list[str]], list[str]]:
    columns = ["ranking", *RECALL_KEYS, "GFLOPs/pair", "reduction"]
    rows = [["ITC", *[f"{r['recall_itc'][key]:.2f}" for key in RECALL_KEYS], f"{r['gflops_per_pair']:.5f}",
             f"{100 * r['gflops_reduction']:.1f}%"],
            [f"ITM top-{r['k']}", *[f"{r['recall_itm'][key]:.2f}" for key in RECALL_KEYS],
             f"{r['gflops_itm_per_pair']:.5f}",
             f"{100 * (1 - r['gflops_itm_per_pair'] / r['gflops_itm_dense_per_pair']):.1f}%"]]
    notes = [f"GFLOPs (2/MAC, per instance): ITC {r['gflops_per_pair']:.5f} per image + caption (dense "
             f"{r['gflops_dense_per_pair']:.5f}); ITM {r['gflops_itm_per_pair']:.5f} more per re-ranked pair "
             f"(dense {r['gflops_itm_dense_per_pair']:.5f}), {r['itm_pairs']} pairs",
             f"kept image tokens per layer: {[round(v, 1) for v in r['kept_image_per_layer']]}; text (ITC): "
             f"{[round(v, 1) for v in r['kept_text_per_layer']]}; text (ITM): "
             f"{[round(v, 1) for v in r['kept_itm_text_per_layer']]}"]
    return columns, rows, notes


def evaluate_nlvr(model, data, split: str, batch_size: int, tokenizer=None, **_) -> dict:
    """NLVR2 accuracy, GFLOPs per instance (an image pair and its statement) and kept tokens."""
    from ..data import nlvr
    from ..train.blip_nlvr import evaluate, tokenizer_for

    s = nlvr.load(data, split)
    r = evaluate(model, s, tokenizer_for(data, tokenizer), batch_size)
    r["split"] = str(s.annotation)
    return r


def nlvr_report(r: dict) -> tuple[list[str], list[list[str]], list[str]]:
    columns = ["accuracy", "GFLOPs/instance", "dense", "reduction"]
    rows = [[f"{r['accuracy']:.2f}", f"{r['gflops']:.5f}", f"{r['gflops_dense']:.5f}",
             f"{100 * r['gflops_reduction']:.1f}%"]]
    notes = [f"kept image tokens per layer: {[round(v, 1) for v in r['kept_image_per_layer']]}; "
             f"text: {[round(v, 1) for v in r['kept_text_per_layer']]}"]
    return columns, rows, notes
