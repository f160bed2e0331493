"""Per-instance FLOPs of the BLIP models from kept token counts, layer by layer.

Same conventions as flops.py: `Flops.flops` counts 2 per multiply-add (FlopCounterMode's), `macs`
one per multiply-add. Only matrix products are counted (linear, conv, attention, cross-attention,
MAG's A, the threshold and the package merge), exactly what FlopCounterMode counts, so the two
agree at batch 1. `fvcore_gflops` adds what fvcore also counts (LayerNorm, 5 per element) to give
the reference's own "GFLOPs" convention (fvcore: one multiply-add = one "FLOP").
"""

from __future__ import annotations

import torch

from .flops import Flops
from .specs import BlipSpec

# bert-base-uncased makes the reference's fixed FLOPs sentence ('Params and FLOPs test, test params
# and FLOPs, ...' in utils.print_params_and_flops) 34 WordPieces + [CLS] + [SEP]
REFERENCE_TEXT_TOKENS = 36
FVCORE_LAYERNORM = 5  # fvcore's norm handle: 5 FLOPs per element with an affine transform


def _mag(n_in: torch.Tensor, width: int, sd_num: int) -> torch.Tensor:
    p = n_in - 1                                       # non-CLS tokens
    return p * width * sd_num + p * sd_num + p * width  # A = x·space_dictᵀ, threshold Pᵀ·TIS, package


def vit_layer_macs(n_in, n_out, width: int, mlp: int, sd_num: int, pruning: bool) -> torch.Tensor:
    n, m = n_in.double(), n_out.double()
    macs = 4 * n * width ** 2 + 2 * n ** 2 * width + 2 * m * width * mlp
    return macs + _mag(n, width, sd_num) if pruning else macs


def bert_layer_macs(n_in, n_out, image_tokens: list, s: BlipSpec, merge: bool, pruning: bool) -> torch.Tensor:
    """Self-attention on n_in tokens, DTP, then cross-attention of the n_out kept tokens to each image
    (its keys and values recomputed in every layer, as BLIP does) and the FFN."""
    n, m, w = n_in.double(), n_out.double(), s.text_width
    macs = 4 * n * w ** 2 + 2 * n ** 2 * w
    for i in image_tokens:
        i = i.double()
        macs = macs + m * w * w + 2 * i * s.vision_width * w + 2 * m * i * w + m * w * w  # q, k/v, QKᵀ+AV, dense
    if merge:
        macs = macs + m * 2 * w * w
    macs = macs + 2 * m * w * s.text_mlp
    return macs + _mag(n, w, s.sd_num) if pruning else macs


def _layers(tokens_in: torch.Tensor, kept: torch.Tensor):
    return torch.cat([tokens_in[:, None], kept[:, :-1]], 1), kept


def image_flops(s: BlipSpec, kept: torch.Tensor, pruning: bool) -> Flops:
    """One image through the ViT: kept [B, vision_layers]."""
    n_in, n_out = _layers(torch.full((kept.shape[0],), s.vision_tokens, dtype=torch.long, device=kept.device), kept)
    layers = vit_layer_macs(n_in, n_out, s.vision_width, s.vision_mlp, s.sd_num, pruning)
    stem = (s.vision_tokens - 1) * 3 * s.patch_size ** 2 * s.vision_width
    return Flops(layers.sum(1) + stem, layers)


def text_flops(s: BlipSpec, tokens_in: torch.Tensor, kept: torch.Tensor, image_tokens: list, pruning: bool) -> Flops:
    """The text / fusion encoder: kept [B, text_layers]; image_tokens: one [B] count per image it
    cross-attends to (none for retrieval's ITC text encoder)."""
    n_in, n_out = _layers(tokens_in, kept)
    cols = [bert_layer_macs(n_in[:, j], n_out[:, j], image_tokens, s,
                            merge=s.task == "nlvr" and len(image_tokens) == 2 and j >= s.merge_from,
                            pruning=pruning) for j in range(kept.shape[1])]
    layers = torch.stack(cols, 1)
    return Flops(layers.sum(1), layers)


def nlvr_flops(s: BlipSpec, kept_image: torch.Tensor, tokens_text: torch.Tensor, kept_text: torch.Tensor,
               pruning: bool) -> Flops:
    """One NLVR2 instance: both images, the fused text, cls_head. kept_image [B, 2, vision_layers]."""
    img = [image_flops(s, kept_image[:, j], pruning) for j in (0, 1)]
    txt = text_flops(s, tokens_text, kept_text, [kept_image[:, 0, -1], kept_image[:, 1, -1]], pruning)
    head = s.text_width ** 2 + 2 * s.text_width
    return Flops(img[0].macs + img[1].macs + txt.macs + head,
                 torch.cat([img[0].per_layer, img[1].per_layer, txt.per_layer], 1))


def packed_nlvr_flops(s: BlipSpec, kept_image: torch.Tensor, tokens_text: torch.Tensor,
                      kept_text: torch.Tensor) -> Flops:
    """What a packed NLVR2 batch computes per instance (models/blip.py in "packed" mode): the per-token
    work on its own tokens; attention (QKᵀ and AV) padded to the batch's longest in every layer: the
    ViT's over the 2B images of its one vision batch, the text self-attention's, and the
    cross-attention's (the text slots against each image's slots). MAG's map also runs on the CLS
    rows (they ride along in the packed rows: one row per image and per statement in every layer)."""
    own = nlvr_flops(s, kept_image, tokens_text, kept_text, pruning=True)
    full = torch.full_like(kept_image[..., :1], s.vision_tokens)
    img_in = torch.cat([full, kept_image[..., :-1]], -1).double()             # [B, 2, vision_layers]
    extra_img = 2 * (img_in.amax((0, 1), keepdim=True) ** 2 - img_in ** 2) * s.vision_width
    t_in, t_out = (t.double() for t in _layers(tokens_text, kept_text))      # [B, text_layers]
    extra_txt = 2 * (t_in.amax(0, keepdim=True) ** 2 - t_in ** 2) * s.text_width
    for j in (0, 1):
        fin = kept_image[:, j, -1:].double()                                  # the image's final tokens
        extra_txt = extra_txt + 2 * (t_out.amax(0, keepdim=True) * fin.max() - t_out * fin) * s.text_width
    extra = torch.cat([extra_img[:, 0], extra_img[:, 1], extra_txt], 1)
    cls_rows = torch.tensor([s.vision_width * s.sd_num] * 2 * s.vision_layers + [s.text_width * s.sd_num] * s.text_layers,
                            device=extra.device)
    extra = extra + cls_rows.double()
    return Flops(own.macs + extra.sum(1), own.per_layer + extra)


def dense_nlvr(s: BlipSpec, text_tokens: int = REFERENCE_TEXT_TOKENS, batch: int = 1):
    """(kept_image, tokens_text, kept_text) of the dense model on `text_tokens`-token statements."""
    return (torch.full((batch, 2, s.vision_layers), s.vision_tokens, dtype=torch.long),
            torch.full((batch,), text_tokens, dtype=torch.long),
            torch.full((batch, s.text_layers), text_tokens, dtype=torch.long))


def nlvr_layernorm_elements(s: BlipSpec, text_tokens: int = REFERENCE_TEXT_TOKENS) -> int:
    """Elements normalised by LayerNorms in one dense NLVR2 instance (fvcore counts them)."""
    vision = 2 * (2 * s.vision_layers + 1) * s.vision_tokens * s.vision_width  # norm1, norm2 per block, final
    text = (1 + 3 * s.text_layers) * text_tokens * s.text_width              # embeddings; self, cross, FFN
    return vision + text


def fvcore_gflops(s: BlipSpec, text_tokens: int = REFERENCE_TEXT_TOKENS) -> float:
    """Dense NLVR2 'GFLOPs' as the reference's fvcore counts them (MACs + LayerNorm elements x 5).
    MAG is not included: the reference's fvcore figure does not contain it (docs/NOTES.md, BLIP)."""
    kept_image, tokens_text, kept_text = dense_nlvr(s, text_tokens)
    macs = nlvr_flops(s, kept_image, tokens_text, kept_text, pruning=False).macs.item()
    return (macs + FVCORE_LAYERNORM * nlvr_layernorm_elements(s, text_tokens)) / 1e9


RETRIEVAL_TEXT_TOKENS = 35  # BLIP retrieval pads / truncates captions to 35 tokens


def describe(model) -> list[tuple[str, str]]:
    """`madtp-deploy info` rows for a BLIP model: spec, parameters, dense GFLOPs in both conventions."""
    s = model.spec
    rows = [(k, str(v)) for k, v in s.to_dict().items()]
    rows.append(("parameters", f"{sum(p.numel() for p in model.parameters()):,}"))
    if s.task == "nlvr":
        ki, tt, kt = dense_nlvr(s)
        dense = nlvr_flops(s, ki, tt, kt, pruning=False)
        mag = nlvr_flops(s, ki, tt, kt, pruning=True).gmacs.item() - dense.gmacs.item()
        t = REFERENCE_TEXT_TOKENS
        rows += [
            (f"NLVR2 GFLOPs (2/MAC, dense, 2 images + {t} tokens)", f"{dense.gflops.item():.4f}"),
            ("NLVR2 GMACs (dense, matrix products only)", f"{dense.gmacs.item():.4f}"),
            ("NLVR2 reference 'GFLOPs' (fvcore: MACs + LayerNorm; published 132.54)", f"{fvcore_gflops(s):.4f}"),
            ("MAG + DTP GMACs added where it prunes (not in the reference's figure)", f"{mag:.4f}"),
        ]
    else:
        img = image_flops(s, torch.full((1, s.vision_layers), s.vision_tokens, dtype=torch.long), False)
        tt = torch.full((1,), RETRIEVAL_TEXT_TOKENS, dtype=torch.long)
        txt = text_flops(s, tt, tt[:, None].expand(-1, s.text_layers), [], False)
        itm = text_flops(s, tt, tt[:, None].expand(-1, s.text_layers), [torch.tensor([s.vision_tokens])], False)
        rows += [
            ("image GFLOPs (2/MAC, dense)", f"{img.gflops.item() + 2 * s.vision_width * s.embed_dim / 1e9:.4f}"),
            (f"text GFLOPs (2/MAC, dense, {RETRIEVAL_TEXT_TOKENS} tokens)",
             f"{txt.gflops.item() + 2 * s.text_width * s.embed_dim / 1e9:.4f}"),
            ("ITM GFLOPs per pair (2/MAC, dense)", f"{itm.gflops.item() + 4 * s.text_width / 1e9:.4f}"),
        ]
    return rows


# -- retrieval: ITC per pair, ITM per re-ranked pair ------------------------------------------------

def itc_image_flops(s: BlipSpec, kept: torch.Tensor, pruning: bool) -> Flops:
    """One image's ITC embedding: the ViT (kept [B, vision_layers]) and vision_proj."""
    f = image_flops(s, kept, pruning)
    return Flops(f.macs + s.vision_width * s.embed_dim, f.per_layer)


def itc_text_flops(s: BlipSpec, tokens_in: torch.Tensor, kept: torch.Tensor, pruning: bool) -> Flops:
    """One caption's ITC embedding: the text encoder without cross-attention, and text_proj."""
    f = text_flops(s, tokens_in, kept, [], pruning)
    return Flops(f.macs + s.text_width * s.embed_dim, f.per_layer)


def itm_flops(s: BlipSpec, tokens_in: torch.Tensor, kept_text: torch.Tensor, image_tokens: torch.Tensor,
              pruning: bool) -> Flops:
    """One re-ranked (image, caption) pair: the fusion encoder, cross-attending to the image's kept
    tokens (`image_tokens` [B]: its last layer's count, CLS included), and itm_head. The image tokens
    are the ones ITC already computed: no ViT work is counted here."""
    f = text_flops(s, tokens_in, kept_text, [image_tokens], pruning)
    return Flops(f.macs + 2 * s.text_width, f.per_layer)


def packed_itc_image_flops(s: BlipSpec, kept: torch.Tensor) -> Flops:
    """What a packed batch of images computes per image (models/layout.py's layout, as CLIP's
    `flops.packed_image_flops`): the per-token work on the image's own tokens, attention (QKᵀ and AV)
    padded to the batch's longest sequence in each layer."""
    own = itc_image_flops(s, kept, pruning=True)
    n_own = torch.cat([torch.full((kept.shape[0], 1), s.vision_tokens, dtype=torch.long, device=kept.device), kept[:, :-1]], 1).double()
    extra = 2 * (n_own.amax(0, keepdim=True) ** 2 - n_own ** 2) * s.vision_width
    return Flops(own.macs + extra.sum(1), own.per_layer + extra)


def image_gflops(s: BlipSpec, kept: torch.Tensor, pruning: bool) -> torch.Tensor:
    """Per-image GFLOPs (2/MAC) of the retrieval image encoder (ViT + vision_proj): the family hook."""
    return itc_image_flops(s, kept, pruning).gflops


def packed_image_gflops(s: BlipSpec, kept: torch.Tensor) -> torch.Tensor:
    return packed_itc_image_flops(s, kept).gflops
