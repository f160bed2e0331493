"""One IO contract per encoder: what its graph takes and returns, and everything derived from that.

An `EncoderIO` owns, for one encoder of one spec (like optimum's per-model ONNX configs):
the wrapper module that export traces, the inputs with their dynamic axes and an example
generator (inputs that prune differently), the outputs, the eager call that validation and the
torch runtime compare against, the default tolerances, and the TensorRT optimization profile.
Export, validation, the runtimes, the bench and the TensorRT builder all go through it; nothing
else switches on the encoder's name. Contracts: CLIP's two encoders, BLIP retrieval's (ITC: vision_proj /
text_proj embeddings; BERT captions), and BLIP NLVR2's one graph ("nlvr": two images and a statement
-> logits and the keep counts of both towers). Outputs are named after the fields of what the model
returns; float outputs are compared within a tolerance, integer and bool ones exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..specs import BlipSpec, ClipSpec, Spec

DEFAULT_ATOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}
MIN_TEXT_LEN = 3  # SOT, one word, EOT


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    axes: tuple  # ints are fixed sizes, strings name dynamic axes ("batch", "seq")

    def shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """The concrete shape for the given sizes of the dynamic axes."""
        return tuple(sizes[a] if isinstance(a, str) else a for a in self.axes)

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "axes": list(self.axes)}


class _Wrapper(nn.Module):
    """positional graph inputs -> the named outputs (fields of the model's result): what the
    exported graph computes, e.g. (embeds, kept[, overflow]) or (logits, kept_image, kept_text)."""

    def __init__(self, model, encode: Callable, names: list[str]):
        super().__init__()
        self.model = model
        self._encode = encode
        self._names = names

    def forward(self, *inputs):
        e = self._encode(self.model, *inputs)
        return tuple(getattr(e, n) for n in self._names)


@dataclass(frozen=True)
class EncoderIO:
    encoder: str                                  # "image" | "text" | "nlvr"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    encode: Callable = field(repr=False, compare=False)    # (model, *tensors) -> Encoded
    examples: Callable = field(repr=False, compare=False)  # (spec, n, seed) -> tuple of tensors
    dataset: Callable | None = field(default=None, repr=False, compare=False)  # (spec, split, root, idx) -> tensors
    checks: Callable | None = field(default=None, repr=False, compare=False)   # (spec, *tensors) -> None or raise
    unit: str = "inputs"                                    # what one instance is: "images", "captions"
    max_sizes: dict = field(default_factory=dict)           # upper bounds of dynamic axes (besides batch)
    min_sizes: dict = field(default_factory=dict)
    atol: dict = field(default_factory=lambda: dict(DEFAULT_ATOL))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def exact_names(self) -> list[str]:
        """Outputs compared exactly (keep counts, overflow flags); the float ones within a tolerance."""
        return [t.name for t in self.outputs if not t.dtype.startswith("float")]

    @property
    def float_names(self) -> list[str]:
        return [t.name for t in self.outputs if t.dtype.startswith("float")]

    def wrapper(self, model) -> nn.Module:
        return _Wrapper(model, self.encode, self.output_names)

    def example(self, spec: Spec, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """n inputs whose keep counts differ (structured images, captions of varied length)."""
        return dict(zip(self.input_names, self.examples(spec, n, seed)))

    def pool(self, split) -> int:
        """How many instances of this encoder a dataset split holds."""
        return len(split.images) if self.unit == "images" else len(split.captions)

    def from_dataset(self, spec: Spec, split, root, idx) -> dict[str, torch.Tensor]:
        """Named inputs for the instances `idx` of a dataset split (images preprocessed, captions
        tokenized with the dataset folder's tokenizer)."""
        assert self.dataset is not None, f"{self.encoder}: no dataset reader in this contract"
        return dict(zip(self.input_names, self.dataset(spec, split, root, list(idx))))

    def check(self, spec: Spec, inputs: dict) -> None:
        """The model's input checks on named inputs (numpy or torch): NaN, sizes, ranges, EOT."""
        if self.checks is not None:
            self.checks(spec, *(torch.as_tensor(inputs[n]) for n in self.input_names))

    @property
    def static(self) -> bool:
        return "overflow" in self.output_names

    def eager(self, model, inputs: dict) -> dict[str, np.ndarray]:
        """The eager model on named inputs (numpy or torch) -> named numpy outputs."""
        tensors = [torch.as_tensor(inputs[name]) for name in self.input_names]
        with torch.inference_mode():
            e = self.encode(model, *tensors)
        return {n: getattr(e, n).numpy() for n in self.output_names}

    def feeds(self, inputs: dict) -> dict:
        """Only this graph's inputs (runtimes ignore extra keys, as onnxruntime's users expect)."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise UsageError(f"{self.encoder} encoder: input(s) {', '.join(missing)} missing; "
                             f"fix: pass {', '.join(self.input_names)}")
        return {n: inputs[n] for n in self.input_names}

    def trt_profile(self, batch: tuple[int, int, int], seq: tuple[int, int, int] | None = None
                    ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """Full (min, opt, max) shapes for every input: batch from `batch`, text length from `seq`
        (default: the spec's range, opt at the longest)."""
        if not 1 <= batch[0] <= batch[1] <= batch[2]:
            raise UsageError(f"batch profile {batch}: need 1 <= min <= opt <= max; fix: e.g. --batch-sizes 1,8,32")
        if "seq" not in self.max_sizes:  # no dynamic text axis: an image graph, or a static text graph
            fixed = sorted({t.axes[1] for t in self.inputs if len(t.axes) == 2 and isinstance(t.axes[1], int)})
            if seq is not None:
                what = (f"a static {self.encoder} graph has a fixed length of {fixed[0]} tokens" if fixed else
                        f"the {self.encoder} graph has no text length")
                raise UsageError(f"--text-lengths {','.join(map(str, seq))}: {what}; fix: drop --text-lengths")
            seq = (1, 1, 1)
        lo, hi = self.min_sizes.get("seq", 1), self.max_sizes.get("seq", 1)
        seq = seq or (lo, hi, hi)
        if not lo <= seq[0] <= seq[1] <= seq[2] <= hi:
            raise UsageError(f"text length profile {seq}: need {lo} <= min <= opt <= max <= {hi}; "
                             f"fix: choose lengths within the model's context")
        out = {}
        for t in self.inputs:
            lo_s, opt_s, hi_s = (t.shape({"batch": b, "seq": s}) for b, s in zip(batch, seq))
            out[t.name] = (lo_s, opt_s, hi_s)
        return out

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "atol": self.atol,
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}


# -- the two CLIP encoders --------------------------------------------------------------------------

def sample_images(spec: Spec, n: int, seed: int = 0) -> tuple[torch.Tensor]:
    """Structured images (blobs on gradients at varied contrast) that give varied keep counts."""
    s = spec.image_size
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    out = []
    for i in range(n):
        img = torch.randn(3, 1, 1, generator=g) * (xx + yy)[None] * 0.5
        for _ in range(1 + i % 4):
            c = torch.rand(2, generator=g) * 2 - 1
            r = 0.1 + 0.4 * torch.rand(1, generator=g)
            blob = (((xx - c[0]) ** 2 + (yy - c[1]) ** 2) < r ** 2).float()
            img = img + blob[None] * torch.randn(3, 1, 1, generator=g) * 2
        img = img + torch.randn(3, s, s, generator=g) * (0.05 + 0.5 * (i % 5) / 4)
        out.append(img)
    return (torch.stack(out),)


def sample_text(spec: ClipSpec, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids with EOT at varied positions; every third caption is right-padded with a zero
    attention mask (HF style), the others zero-padded with an all-ones mask (OpenAI style)."""
    g = torch.Generator().manual_seed(seed)
    eot_id = spec.eot_token_id if spec.eot_token_id is not None else spec.vocab_size - 1
    ids = torch.randint(1, max(2, min(eot_id, spec.vocab_size) - 2), (n, spec.context_length), generator=g)
    ids[:, 0] = max(eot_id - 1, 1)
    # real captions are short next to the context (OpenAI pads to 77): mostly early EOTs, a few late
    short = torch.randint(2, max(3, spec.context_length // 3), (n,), generator=g)
    long = torch.randint(2, spec.context_length, (n,), generator=g)
    ends = torch.where(torch.arange(n) % 4 == 3, long, short)
    ids[torch.arange(n), ends] = eot_id
    after = torch.arange(spec.context_length)[None, :] > ends[:, None]
    ids[after] = 0
    mask = torch.ones_like(ids)
    hf_style = torch.arange(n) % 3 == 2
    mask[hf_style[:, None] & after] = 0
    return ids, mask


def _check_pixels(spec: ClipSpec, pixels) -> None:
    from ..models.inputs import check_pixels

    check_pixels(spec, pixels)


def _check_text(spec: ClipSpec, ids, mask) -> None:
    from ..models.inputs import check_text

    check_text(spec, ids, mask)


def _captions(spec: ClipSpec, split, root, idx):
    from ..data import dataset

    return split.tokenize(dataset.tokenizer_for(root, spec), idx)


def _outputs(spec: Spec, layers: int, static: bool) -> tuple[TensorSpec, ...]:
    out = (TensorSpec("embeds", "float32", ("batch", spec.embed_dim)), TensorSpec("kept", "int64", ("batch", layers)))
    # static graphs (fixed capacities) say which instance wanted more slots than a layer has
    return out + ((TensorSpec("overflow", "bool", ("batch", layers)),) if static else ())


def clip_image(spec: ClipSpec, static: bool = False) -> EncoderIO:
    return EncoderIO(
        "image",
        (TensorSpec("pixels", "float32", ("batch", 3, spec.image_size, spec.image_size)),),
        _outputs(spec, spec.vision_layers, static),
        encode=lambda m, pixels: m.encode_image(pixels),
        examples=sample_images, unit="images",
        dataset=lambda spec, split, root, idx: (split.pixels(spec.image_size, idx),),
        checks=_check_pixels)


def clip_text(spec: ClipSpec, static: bool = False) -> EncoderIO:
    # a static graph takes captions padded to the context length (as OpenAI's tokenizer does)
    seq = spec.context_length if static else "seq"
    return EncoderIO(
        "text",
        (TensorSpec("input_ids", "int64", ("batch", seq)), TensorSpec("attention_mask", "int64", ("batch", seq))),
        _outputs(spec, spec.text_layers, static),
        encode=lambda m, ids, mask: m.encode_text(ids, mask),
        examples=sample_text, unit="captions", dataset=_captions, checks=_check_text,
        max_sizes={} if static else {"seq": spec.context_length},
        min_sizes={} if static else {"seq": MIN_TEXT_LEN})


# -- the two BLIP retrieval encoders (ITC: vision_proj / text_proj embeddings) -----------------------

BERT_CLS, BERT_SEP = 101, 102   # bert-base-uncased's [CLS] and [SEP]
BLIP_TEXT_TOKENS = 35           # BLIP retrieval pads / truncates captions to 35 tokens


def bert_special_ids(spec: BlipSpec) -> tuple[int, int, int]:
    """([CLS], [SEP], first word id) for sampled captions: bert-base-uncased's where the vocabulary
    has them; 1, 2, 3 in smaller (test) vocabularies, the sampler's own choice (a dataset's vocab.txt
    may place them elsewhere: the model reads [CLS] by position). The last two ids ([DEC], [ENC])
    are never sampled as words."""
    return (BERT_CLS, BERT_SEP, 999) if spec.vocab_size > 1000 else (1, 2, 3)


def sample_bert_text(spec: BlipSpec, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style captions that prune differently: [CLS] first, [SEP] after the last word, lengths
    varied (mostly short, every fourth up to the padded length), right-padded with id 0 and mask 0."""
    g = torch.Generator().manual_seed(seed)
    cls, sep, first = bert_special_ids(spec)
    length = min(spec.max_positions, BLIP_TEXT_TOKENS)
    ids = torch.randint(first, spec.vocab_size - 2, (n, length), generator=g)
    short = torch.randint(MIN_TEXT_LEN - 1, max(MIN_TEXT_LEN, length // 2), (n,), generator=g)
    long = torch.randint(MIN_TEXT_LEN - 1, length, (n,), generator=g)
    ends = torch.where(torch.arange(n) % 4 == 3, long, short)  # the [SEP] position
    ids[:, 0] = cls
    ids[torch.arange(n), ends] = sep
    after = torch.arange(length)[None, :] > ends[:, None]
    ids[after] = 0
    return ids, (~after).long()


def _check_blip_text(spec: BlipSpec, ids, mask) -> None:
    from ..models.inputs import check_blip_text

    check_blip_text(spec, ids, mask)


def _blip_captions(spec: BlipSpec, split, root, idx):
    from ..data.bert_tokenizer import BlipTokenizer

    tok = BlipTokenizer(Path(root), max_length=min(spec.max_positions, BLIP_TEXT_TOKENS))
    return tok([split.captions[j] for j in idx], enc=False, where=str(split.annotation))


def blip_image(spec: BlipSpec, static: bool = False) -> EncoderIO:
    return EncoderIO(
        "image",
        (TensorSpec("pixels", "float32", ("batch", 3, spec.image_size, spec.image_size)),),
        _outputs(spec, spec.vision_layers, False),
        encode=lambda m, pixels: m.encode_image(pixels),
        examples=sample_images, unit="images",
        dataset=lambda spec, split, root, idx: (split.pixels(spec.image_size, idx),),
        checks=_check_pixels)  # BLIP normalises with CLIP's mean and std


def blip_text(spec: BlipSpec, static: bool = False) -> EncoderIO:
    return EncoderIO(
        "text",
        (TensorSpec("input_ids", "int64", ("batch", "seq")), TensorSpec("attention_mask", "int64", ("batch", "seq"))),
        _outputs(spec, spec.text_layers, False),
        encode=lambda m, ids, mask: m.encode_text(ids, mask),
        examples=sample_bert_text, unit="captions", dataset=_blip_captions, checks=_check_blip_text,
        max_sizes={"seq": spec.max_positions}, min_sizes={"seq": MIN_TEXT_LEN})


def sample_nlvr(spec: BlipSpec, n: int, seed: int = 0):
    """NLVR2 instances that prune differently: two structured images (sample_images) and a BERT-style
    statement of varied length whose first token is [ENC], as the reference sets it."""
    px = sample_images(spec, 2 * n, seed)[0]
    order = torch.randperm(2 * n, generator=torch.Generator().manual_seed(seed))  # pair unlike images
    px = px[order]
    ids, mask = sample_bert_text(spec, n, seed)
    ids[:, 0] = spec.enc_id
    return px[:n], px[n:], ids, mask


def _check_nlvr(spec: BlipSpec, images0, images1, ids, mask) -> None:
    from ..models.inputs import check_blip_text, check_pixels

    check_pixels(spec, images0, "images0")
    check_pixels(spec, images1, "images1")
    check_blip_text(spec, ids, mask)


def blip_nlvr(spec: BlipSpec, static: bool = False) -> EncoderIO:
    s = spec.image_size
    return EncoderIO(
        "nlvr",
        (TensorSpec("images0", "float32", ("batch", 3, s, s)), TensorSpec("images1", "float32", ("batch", 3, s, s)),
         TensorSpec("input_ids", "int64", ("batch", "seq")), TensorSpec("attention_mask", "int64", ("batch", "seq"))),
        (TensorSpec("logits", "float32", ("batch", 2)),
         TensorSpec("kept_image", "int64", ("batch", 2, spec.vision_layers)),
         TensorSpec("kept_text", "int64", ("batch", spec.text_layers))),
        encode=lambda m, images0, images1, ids, mask: m.nlvr(images0, images1, ids, mask),
        examples=sample_nlvr, unit="pairs", checks=_check_nlvr,
        # min 3: torch.export specialises a statement length of 2 or less (docs/NOTES.md)
        max_sizes={"seq": spec.max_positions}, min_sizes={"seq": MIN_TEXT_LEN})


def encoders_of(spec) -> tuple[str, ...]:
    """The graphs a model exports (its family's): BLIP NLVR2's one, or the image and text encoders."""
    from ..families import of

    return of(spec).encoders


def encoder_io(spec_or_model, encoder: str, static: bool | None = None) -> EncoderIO:
    """The IO contract of `encoder` for a spec (or a model, whose spec is used), from the spec's family
    (madtp_deploy.families). `static` (default: whether the model has capacities) gives the
    fixed-capacity graph's contract, for the families that have one."""
    from ..families import of

    spec = getattr(spec_or_model, "spec", spec_or_model)
    if static is None:
        static = encoder in (getattr(spec_or_model, "capacity", None) or {})
    return of(spec).contract(spec, encoder, static)
