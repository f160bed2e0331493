"""BLIP (ViT + BERT text/fusion encoder) with MADTP's MAG and DTP, for NLVR2 and retrieval.

Parameter names are the reference's (Salesforce BLIP's plus `space_dict`), so BLIP and MADTP
checkpoints load by name. The pruned block loop is models/tower.py's (shared with CLIP) and the pruning
math `madtp_deploy.pruning`'s; this file gives them BLIP's blocks:
- ViT: DTP after every block's attention, on the patch tokens (CLS set aside), before the MLP.
- BERT: DTP after every layer's self-attention, on tokens 1.. (token 0, [ENC] or [CLS], set aside),
  before the cross-attention and the FFN. MAG's A is computed on each layer's input tokens.
BLIP's MAG has no per-layer projection: tokens meet `space_dict` directly (the reference's
`map_func=False`).

Every layer carries a `valid` mask over its tokens. In "reference" mode without padding it is all
True and the computation is exactly the reference's (max-keep: every instance keeps the batch's
largest count; NLVR2's vision encoder sees image 0 and image 1 of the whole batch as one batch).
In "invariant" mode it masks the slots an instance does not own, so each answer is its batch-1 one
(an NLVR2 instance is its image pair: as in the reference's batch-1 vision batch, its two images keep
the larger of their two counts).
Padding is always masked (the reference scores padding tokens too: see docs/NOTES.md, BLIP).
"packed" (the serving default) gives the invariant answers with the per-token work (LayerNorms,
projections, MLP / FFN, MAG's token map, the cross-attention's image keys and values) run on the kept
rows only, through the layout CLIP uses (models/layout.py); attention itself sees padded tokens.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import pruning
from ..errors import InputError
from ..modes import LIBRARY_DEFAULT, Mode, parse_mode
from ..specs import BlipSpec
from . import tower
from .clip import Encoded  # the encoders' result, as CLIP's (overflow stays None: BLIP has no capacities)
from .inputs import check_blip_text, check_pixels

NEG = torch.finfo(torch.float32).min


@dataclass
class Tokens:
    """A tower's output tokens with their mask, kept counts and MAG features."""
    x: torch.Tensor                # [B, L, C] final hidden states (CLS at 0)
    valid: torch.Tensor            # [B, L] bool
    kept: torch.Tensor             # [B, layers] int64: valid tokens after each layer
    tokens_in: torch.Tensor        # [B] int64: tokens entering the first layer
    align: torch.Tensor | None = None  # [B, M, D] MAG pooled features summed over layers


@dataclass
class NlvrOutput:
    logits: torch.Tensor           # [B, 2]
    kept_image: torch.Tensor       # [B, 2, vision_layers] int64: image 0 and image 1
    kept_text: torch.Tensor        # [B, text_layers] int64
    tokens_text: torch.Tensor      # [B] int64: text tokens entering the encoder
    align_image: torch.Tensor | None = None  # [B, M, D] mean of the two images' MAG features
    align_text: torch.Tensor | None = None


@dataclass
class MatchOutput:
    logits: torch.Tensor           # [B, 2] ITM logits (index 1: "matches")
    kept_image: torch.Tensor       # [B, vision_layers]
    kept_text: torch.Tensor        # [B, text_layers]
    tokens_text: torch.Tensor      # [B]

    @property
    def score(self) -> torch.Tensor:
        return self.logits.softmax(dim=-1)[:, 1]


def _pair_scores(attn, head_out, attn_map, valid, temperature, pairs: int):
    """MADTP's TIS, and a threshold under which rows r and r + pairs keep the same count: the larger of
    their two counts. That is the reference's max-keep inside one NLVR2 instance (its batch-1 vision
    batch is the instance's two images), so "invariant" answers equal the reference's at batch 1."""
    tis = pruning.importance_score(pruning.self_attention_score(attn, valid),
                                   pruning.token_attention_score(attn_map, valid),
                                   pruning.cls_attention_score(attn, head_out))
    k = pruning.keep_counts(tis, pruning.threshold(attn_map, tis, temperature, valid), valid)
    k = torch.maximum(k, torch.cat([k[pairs:], k[:pairs]]))  # rows r and r + pairs: the two halves swapped
    ranked = torch.topk(tis.masked_fill(~valid, NEG), tis.shape[1], dim=1, sorted=True).values
    ranked = torch.cat([ranked, torch.full_like(ranked[:, :1], NEG)], 1)
    return tis, ranked.gather(1, k[:, None]).squeeze(1)  # the (k+1)-th largest: exactly k lie above


# -- vision: BLIP's ViT -------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, patch)


class ViTAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def attend(self, qkv: torch.Tensor, bias: torch.Tensor):
        """Padded qkv [B, L, 3C] -> merged heads [B, L, C], attention [B, H, L, L], attn·v [B, H, L, dh]."""
        b, n, c3 = qkv.shape
        c = c3 // 3
        q, k, v = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5 + bias, dim=-1)
        head_out = attn @ v
        return head_out.transpose(1, 2).reshape(b, n, c), attn, head_out


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = ViTAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, mlp)

    # -- the pruned tower's block interface (models/tower.py) --
    q_map = None  # BLIP's MAG has no per-layer map

    def attn_in(self, rows: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.attn.qkv(self.norm1(rows)),)

    def attend(self, qkv: torch.Tensor, bias: torch.Tensor):
        return self.attn.attend(qkv, bias)

    def attn_out(self, merged: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return rows + self.attn.proj(merged)

    def feed_forward(self, lay, rows: torch.Tensor, cross=None) -> torch.Tensor:
        return rows + self.mlp(self.norm2(rows))


class VisionTransformer(nn.Module):
    def __init__(self, s: BlipSpec):
        super().__init__()
        self.patch_embed = PatchEmbed(s.patch_size, s.vision_width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, s.vision_width))
        self.pos_embed = nn.Parameter(torch.zeros(1, s.vision_tokens, s.vision_width))
        self.blocks = nn.ModuleList([ViTBlock(s.vision_width, s.vision_heads, s.vision_mlp, s.vision_eps)
                                     for _ in range(s.vision_layers)])
        self.norm = nn.LayerNorm(s.vision_width, eps=s.vision_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, pixels, space_dict, temperature, mode, want_align=False, pairs: int = 0) -> Tokens:
        """`pairs` > 0 (invariant semantics, NLVR2): rows r and r + pairs are one instance's two images."""
        x = self.patch_embed.proj(pixels.to(self.pos_embed.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        tokens_in = valid.sum(1)
        min_keep = torch.zeros_like(tokens_in)  # the reference skips a layer only when K < 1 or N - K <= 1
        score_fn = functools.partial(_pair_scores, pairs=pairs) if pairs else None
        t = tower.forward(self.blocks, x, valid, space_dict, temperature, mode, min_keep, want_align=want_align,
                      score_fn=score_fn, final=self.norm)
        return Tokens(t.x, t.valid, t.kept, tokens_in, t.align)


# -- text: BLIP's BERT (med.py / nlvr_encoder.py) -----------------------------------------------

class BertEmbeddings(nn.Module):
    def __init__(self, s: BlipSpec):
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.text_width, padding_idx=0)
        self.position_embeddings = nn.Embedding(s.max_positions, s.text_width)
        self.LayerNorm = nn.LayerNorm(s.text_width, eps=s.text_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(pos)[None])


class BertSelfAttention(nn.Module):
    """Queries from the text; keys and values from the text (self) or the image (cross)."""

    def __init__(self, width: int, heads: int, kv_width: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(kv_width, width)
        self.value = nn.Linear(kv_width, width)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor):
        """Padded projections -> merged heads [B, L, C], attention [B, H, L, Lkv], attn·v [B, H, L, dh]."""
        q, k, v = self._split(q), self._split(k), self._split(v)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + bias, dim=-1)
        head_out = torch.matmul(attn, v)
        b, _, n, _ = head_out.shape
        return head_out.permute(0, 2, 1, 3).reshape(b, n, -1), attn, head_out


class BertSelfOutput(nn.Module):
    """dense (+ residual, LayerNorm); NLVR2's twin: dense0/dense1, averaged or fused by merge_layer."""

    def __init__(self, width: int, eps: float, twin: bool = False, merge: bool = False):
        super().__init__()
        self.twin, self.merge = twin, merge
        if twin:
            self.dense0 = nn.Linear(width, width)
            self.dense1 = nn.Linear(width, width)
        else:
            self.dense = nn.Linear(width, width)
        if merge:
            self.merge_layer = nn.Linear(2 * width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, h, residual: torch.Tensor) -> torch.Tensor:
        if not self.twin:
            return self.LayerNorm(self.dense(h) + residual)
        h0, h1 = self.dense0(h[0]), self.dense1(h[1])
        fused = self.merge_layer(torch.cat([h0, h1], -1)) if self.merge else (h0 + h1) / 2
        return self.LayerNorm(fused + residual)


class BertAttention(nn.Module):
    def __init__(self, width: int, heads: int, eps: float, kv_width: int | None = None, twin: bool = False,
                 merge: bool = False):
        super().__init__()
        kv = kv_width or width
        if twin:
            self.self0 = BertSelfAttention(width, heads, kv)
            self.self1 = BertSelfAttention(width, heads, kv)
        else:
            self.self = BertSelfAttention(width, heads, kv)
        self.output = BertSelfOutput(width, eps, twin, merge)


class BertIntermediate(nn.Module):
    def __init__(self, width: int, mlp: int):
        super().__init__()
        self.dense = nn.Linear(width, mlp)


class BertOutput(nn.Module):
    def __init__(self, width: int, mlp: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(mlp, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)


class BertLayer(nn.Module):
    def __init__(self, s: BlipSpec, index: int):
        super().__init__()
        w, eps = s.text_width, s.text_eps
        self.attention = BertAttention(w, s.text_heads, eps)
        twin = s.task == "nlvr"
        self.crossattention = BertAttention(w, s.text_heads, eps, kv_width=s.vision_width, twin=twin,
                                            merge=twin and index >= s.merge_from)
        self.intermediate = BertIntermediate(w, s.text_mlp)
        self.output = BertOutput(w, s.text_mlp, eps)

    def cross(self, lay, rows: torch.Tensor, images: list) -> torch.Tensor:
        """Cross-attention to one image (retrieval's ITM) or two (NLVR2's twin). `images`: one
        (layout, rows, bias) per image; keys and values are projected on the image's rows."""
        ca = self.crossattention
        heads = [ca.self0, ca.self1] if len(images) == 2 else [ca.self]
        h = []
        for att, (ilay, irows, ibias) in zip(heads, images):
            q = lay.unrows(att.query(rows))
            k, v = ilay.unrows(att.key(irows)), ilay.unrows(att.value(irows))
            h.append(lay.rows(att.attend(q, k, v, ibias)[0]))
        return ca.output(h if len(images) == 2 else h[0], rows)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.LayerNorm(self.output.dense(F.gelu(self.intermediate.dense(x))) + x)

    # -- the pruned tower's block interface (models/tower.py) --
    q_map = None  # BLIP's MAG has no per-layer map

    def attn_in(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sa = self.attention.self
        return sa.query(rows), sa.key(rows), sa.value(rows)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor):
        return self.attention.self.attend(q, k, v, bias)

    def attn_out(self, merged: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.attention.output(merged, rows)

    def feed_forward(self, lay, rows: torch.Tensor, cross=None) -> torch.Tensor:
        """Cross-attention to the images (None: text only, retrieval's ITC), then the FFN."""
        if cross is not None:
            rows = self.cross(lay, rows, cross)
        return self.ffn(rows)


class BertEncoder(nn.Module):
    def __init__(self, s: BlipSpec):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(s, i) for i in range(s.text_layers)])


class BertModel(nn.Module):
    """BLIP's text / fusion encoder (no pooler). images=None: text only (retrieval ITC)."""

    def __init__(self, s: BlipSpec):
        super().__init__()
        self.embeddings = BertEmbeddings(s)
        self.encoder = BertEncoder(s)

    def forward(self, input_ids, attention_mask, space_dict, temperature, mode, images=None,
                want_align=False) -> Tokens:
        x = self.embeddings(input_ids)
        if attention_mask is None:
            valid = torch.ones(input_ids.shape, dtype=torch.bool, device=x.device)
        else:
            valid = attention_mask.to(torch.bool)
        tokens_in = valid.sum(1)
        min_keep = torch.zeros_like(tokens_in)
        make_layout = tower.layout_for(mode)
        cross = None
        if images is not None:  # each image's kept tokens as rows, once for every layer's keys and values
            cross = []
            for img in images:
                ilay = make_layout(img.valid)
                cross.append((ilay, ilay.rows(img.x), tower.attention_bias(img.valid)))
        t = tower.forward(self.encoder.layer, x, valid, space_dict, temperature, mode, min_keep, want_align=want_align,
                      cross=cross)
        return Tokens(t.x, t.valid, t.kept, tokens_in, t.align)


# -- the models ---------------------------------------------------------------------------------

class _Blip(nn.Module):
    def __init__(self, spec: BlipSpec, mode=LIBRARY_DEFAULT, temperature: float = 0.0):
        super().__init__()
        self.spec = spec.validate()
        self.visual_encoder = VisionTransformer(spec)
        self.text_encoder = BertModel(spec)
        self.space_dict = nn.Parameter(torch.randn(spec.sd_num, spec.sd_dim))
        self.mode = mode
        self.temperature = float(temperature)
        for name, mod in self.text_encoder.named_modules():  # BERT's init (the reference's _init_weights)
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
            if isinstance(mod, nn.Linear):
                nn.init.zeros_(mod.bias)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value) -> None:
        self._mode = parse_mode(value).value

    def image_tokens(self, pixels: torch.Tensor, want_align: bool = False, pairs: int = 0) -> Tokens:
        return self.visual_encoder(pixels, self.space_dict, self.temperature, self.mode, want_align, pairs)

    def text_tokens(self, input_ids, attention_mask=None, images=None, want_align: bool = False) -> Tokens:
        return self.text_encoder(input_ids, attention_mask, self.space_dict, self.temperature, self.mode,
                                 images, want_align)


class MadtpBlipNLVR(_Blip):
    """NLVR2: is the statement true of the image pair? `cls_head` on the fused [ENC] token."""

    def __init__(self, spec: BlipSpec, mode=LIBRARY_DEFAULT, temperature: float = 0.0):
        super().__init__(spec, mode, temperature)
        w = spec.text_width
        self.cls_head = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 2))

    def nlvr(self, images0, images1, input_ids, attention_mask=None, want_align: bool = False) -> NlvrOutput:
        """ids[:, 0] must already be the [ENC] id (as the reference sets it)."""
        check_pixels(self.spec, images0, "images0")
        check_pixels(self.spec, images1, "images1")
        check_blip_text(self.spec, input_ids, attention_mask)
        if images1.shape[0] != images0.shape[0] or input_ids.shape[0] != images0.shape[0]:
            raise InputError(f"images0, images1, input_ids: batches of {images0.shape[0]}, {images1.shape[0]} and "
                             f"{input_ids.shape[0]}; fix: pass one image pair per statement")
        b = images0.shape[0]
        # One vision batch, as the reference: max-keep over all 2B images in reference mode, over the
        # instance's own two images in invariant mode (the reference's batch-1 answer).
        pairs = 0 if self.mode == Mode.reference else b
        img = self.image_tokens(torch.cat([images0, images1]), want_align, pairs)
        halves = [Tokens(img.x[i * b:(i + 1) * b], img.valid[i * b:(i + 1) * b], img.kept[i * b:(i + 1) * b],
                         img.tokens_in[i * b:(i + 1) * b]) for i in (0, 1)]
        txt = self.text_tokens(input_ids, attention_mask, halves, want_align)
        logits = self.cls_head(txt.x[:, 0])
        align_image = (img.align[:b] + img.align[b:]) / 2 if img.align is not None else None
        return NlvrOutput(logits, torch.stack([halves[0].kept, halves[1].kept], 1), txt.kept, txt.tokens_in,
                          align_image, txt.align)

    forward = nlvr


class MadtpBlipRetrieval(_Blip):
    """Image-text retrieval: ITC embeddings (vision_proj / text_proj) and the ITM head for re-ranking."""

    def __init__(self, spec: BlipSpec, mode=LIBRARY_DEFAULT, temperature: float = 0.0):
        super().__init__(spec, mode, temperature)
        self.vision_proj = nn.Linear(spec.vision_width, spec.embed_dim)
        self.text_proj = nn.Linear(spec.text_width, spec.embed_dim)
        self.itm_head = nn.Linear(spec.text_width, 2)
        self.temp = nn.Parameter(0.07 * torch.ones([]))

    def encode_image(self, pixels: torch.Tensor, want_align: bool = False) -> Encoded:
        check_pixels(self.spec, pixels)
        t = self.image_tokens(pixels, want_align)
        return Encoded(self.vision_proj(t.x[:, 0]), t.kept, t.tokens_in, t.align)

    def encode_text(self, input_ids, attention_mask=None, want_align: bool = False) -> Encoded:
        check_blip_text(self.spec, input_ids, attention_mask)
        t = self.text_tokens(input_ids, attention_mask, None, want_align)
        return Encoded(self.text_proj(t.x[:, 0]), t.kept, t.tokens_in, t.align)

    def match(self, pixels, input_ids, attention_mask=None, image: Tokens | None = None) -> MatchOutput:
        """ITM logits of pixels[i] with text i. ids[:, 0] is replaced by [ENC], as BLIP does.
        `image`: the image tokens of an earlier `image_tokens(pixels)` call, to re-rank without
        re-encoding."""
        check_blip_text(self.spec, input_ids, attention_mask)
        if image is None:
            check_pixels(self.spec, pixels)
        img = self.image_tokens(pixels) if image is None else image
        ids = input_ids.clone()
        ids[:, 0] = self.spec.enc_id
        txt = self.text_tokens(ids, attention_mask, [img])
        return MatchOutput(self.itm_head(txt.x[:, 0]), img.kept, txt.kept, txt.tokens_in)

    @torch.no_grad()
    def rerank(self, pixels, input_ids, attention_mask=None, k: int = 16) -> torch.Tensor:
        """Image-to-text scores as BLIP's evaluation computes them [images, texts]: the k best texts
        of each image by ITC cosine are re-scored with ITM (its "match" logit + the cosine); the
        others get -100. Each image is encoded once; its tokens are repeated for its k candidates."""
        img = self.image_tokens(pixels)
        cos = F.normalize(self.vision_proj(img.x[:, 0]), dim=-1) @ \
            F.normalize(self.encode_text(input_ids, attention_mask).embeds, dim=-1).t()
        k = min(k, cos.shape[1])
        top, idx = cos.topk(k, dim=1)
        scores = torch.full_like(cos, -100.0)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        for i in range(cos.shape[0]):
            rep = Tokens(img.x[i:i + 1].expand(k, -1, -1), img.valid[i:i + 1].expand(k, -1), img.kept[i:i + 1],
                         img.tokens_in[i:i + 1])
            itm = self.match(None, input_ids[idx[i]], mask[idx[i]], image=rep)
            scores[i, idx[i]] = itm.logits[:, 1] + top[i]
        return scores

    def similarity(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """ITC similarities [images, texts] / temp, as BLIP's evaluation ranks them."""
        return F.normalize(image_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).t() / self.temp


def build(spec: BlipSpec, mode=LIBRARY_DEFAULT, temperature: float = 0.0) -> _Blip:
    cls = MadtpBlipNLVR if spec.task == "nlvr" else MadtpBlipRetrieval
    return cls(spec, mode=mode, temperature=temperature)
