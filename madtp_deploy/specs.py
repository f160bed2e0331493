"""Registry of model specs: geometry, MAG size and batch-mode defaults for every named model.

Specs for real checkpoints are also *inferred* from their weights (see models/checkpoint.py);
the registry names the geometries users ask for by name and the tiny ones tests and the demo use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import SpecError


class _Geometry:
    """What every spec (a ViT beside a text transformer) shares: the patch grid, the round trip
    through a dict (unknown fields refused) and the geometry checks."""

    # fields every spec dataclass declares (annotations only: not fields of this plain base)
    name: str
    image_size: int
    patch_size: int
    vision_width: int
    vision_heads: int
    text_width: int
    text_heads: int

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def vision_tokens(self) -> int:
        return self.grid * self.grid + 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses

    @classmethod
    def from_dict(cls, d: dict):
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - fields)
        if unknown:
            raise SpecError(f"spec: unknown field(s) {', '.join(unknown)}; fix: remove them")
        return cls(**d)

    def _check_geometry(self) -> None:
        for tower, width, heads in (("vision", self.vision_width, self.vision_heads),
                                    ("text", self.text_width, self.text_heads)):
            if heads < 1 or width % heads:
                raise SpecError(f"spec {self.name}: {tower}_width {width} is not divisible by "
                                f"{tower}_heads {heads}; fix: choose heads that divide the width")
        if self.image_size % self.patch_size:
            raise SpecError(f"spec {self.name}: image_size {self.image_size} is not a multiple of "
                            f"patch_size {self.patch_size}")


@dataclass(frozen=True)
class ClipSpec(_Geometry):
    name: str
    # vision tower (ViT)
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    # text tower (causal transformer)
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int
    embed_dim: int
    # MAG: the shared alignment tokens
    sd_num: int = 100
    sd_dim: int = 768
    act: str = "quick_gelu"
    ln_eps: float = 1e-5
    # EOT token id; None means "the largest id in the sequence" (OpenAI CLIP's argmax rule)
    eot_token_id: int | None = None

    def validate(self) -> "ClipSpec":
        self._check_geometry()
        if self.act not in ("quick_gelu", "gelu"):
            raise SpecError(f"spec {self.name}: act {self.act!r} unsupported; fix: quick_gelu or gelu")
        return self


_REGISTRY: dict[str, Spec] = {}


def register(spec: Spec) -> Spec:
    _REGISTRY[spec.name] = spec.validate()
    return spec


def get_spec(name: str) -> Spec:
    try:
        return _REGISTRY[name]
    except KeyError as exc:
        raise SpecError(f"model {name!r}: not a registered spec, file or directory; "
                        f"fix: use one of {', '.join(sorted(_REGISTRY))} or a path") from exc


def spec_from_dict(d: dict) -> Spec:
    """A spec recorded as a dict (sidecars, checkpoints): BLIP's carry a task, CLIP's do not."""
    return BlipSpec.from_dict(d) if "task" in d else ClipSpec.from_dict(d)


def spec_names() -> list[str]:
    return sorted(_REGISTRY)


# OpenAI CLIP ViT-B/16 (the CrossGET / UPop CLIP baseline geometry).
register(ClipSpec("clip-vit-b16", 224, 16, 768, 12, 12, 3072, 77, 49408, 512, 12, 8, 2048, 512))
# The reference MADTP CLIP: ViT-L/14 at 336 px, 12-layer 768-wide text tower.
register(ClipSpec("clip-vit-l14-336", 336, 14, 1024, 24, 16, 4096, 77, 49408, 768, 12, 12, 3072, 768))
# Tiny geometries. Head width 64 throughout, as OpenAI's checkpoints imply (heads = width // 64).
register(ClipSpec("clip-tiny-test", 32, 8, 128, 2, 2, 256, 16, 64, 128, 2, 2, 256, 64,
                  sd_num=16, sd_dim=32, eot_token_id=63))
# The shipped demo model's geometry (trained by `madtp-deploy train` on the generated scenes).
register(ClipSpec("madtp-clip-tiny", 64, 8, 128, 4, 2, 512, 16, 64, 128, 4, 2, 512, 64,
                  sd_num=32, sd_dim=64, eot_token_id=63))
# The shipped demo model (issue 21): deep enough for the reductions to compound over layers. 8 + 8 layers;
# the text tower half the vision width (as in OpenAI's CLIPs, where text is the narrower tower).
register(ClipSpec("madtp-clip-deep", 64, 8, 128, 8, 2, 512, 16, 64, 64, 8, 1, 256, 64,
                  sd_num=32, sd_dim=64, eot_token_id=63))
# Issue 21's finer-patch experiment: the same 64 px images cut into 4 px patches (256 + CLS tokens, 4x the
# deep model's), a narrower vision tower to keep training affordable on two cores (docs/RESULTS.md).
register(ClipSpec("madtp-clip-p4", 64, 4, 96, 8, 2, 384, 16, 64, 64, 8, 1, 256, 64,
                  sd_num=32, sd_dim=64, eot_token_id=63))


@dataclass(frozen=True)
class BlipSpec(_Geometry):
    """BLIP (ViT + BERT text/fusion encoder) for NLVR2 or image-text retrieval, with MADTP.

    BLIP's MAG has no per-layer map: tokens meet `space_dict` directly, so sd_dim must equal both
    widths. Heads follow a head width of 64 (BLIP's configs) unless a spec says otherwise.
    """
    name: str
    task: str                      # "nlvr" or "retrieval"
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int
    max_positions: int = 512
    embed_dim: int = 256           # retrieval: ITC embedding size (vision_proj / text_proj)
    merge_from: int = 6            # nlvr: text layers >= merge_from fuse the two images with merge_layer
    sd_num: int = 100
    sd_dim: int = 768
    vision_eps: float = 1e-6
    text_eps: float = 1e-12
    enc_token_id: int | None = None  # [ENC]; None: the last id (bert-base-uncased + [DEC], [ENC])

    @property
    def enc_id(self) -> int:
        return self.vocab_size - 1 if self.enc_token_id is None else self.enc_token_id

    def validate(self) -> "BlipSpec":
        if self.task not in ("nlvr", "retrieval"):
            raise SpecError(f"spec {self.name}: task {self.task!r} unsupported; fix: nlvr or retrieval")
        self._check_geometry()
        if not self.sd_dim == self.vision_width == self.text_width:
            raise SpecError(f"spec {self.name}: sd_dim {self.sd_dim} must equal vision_width {self.vision_width} "
                            f"and text_width {self.text_width} (BLIP's MAG has no projection); fix: make them equal")
        return self


# BLIP ViT-B/16 at 384 px + BERT-base (bert-base-uncased with [DEC], [ENC]): the reference's NLVR2 model.
register(BlipSpec("blip-nlvr", "nlvr", 384, 16, 768, 12, 12, 3072, 30524, 768, 12, 12, 3072))
# The reference's BLIP retrieval model (COCO / Flickr30K), ITC embeddings of 256.
register(BlipSpec("blip-retrieval", "retrieval", 384, 16, 768, 12, 12, 3072, 30524, 768, 12, 12, 3072))
# Tiny geometries for tests and the generated NLVR task: width 128 (2 heads of 64), 2 layers, 32 px.
register(BlipSpec("blip-nlvr-tiny", "nlvr", 32, 8, 128, 2, 2, 256, 64, 128, 2, 2, 256, max_positions=32,
                  merge_from=1, sd_num=16, sd_dim=128))
# Issue 21 (item 3): deep enough for the reductions to compound (6 + 6 layers, fusion from text layer 3, as
# BLIP's 6 of 12), and its pre-training geometry: as BLIP, NLVR2 fine-tunes a model pre-trained with ITC + ITM
# (`train --pretrained`, models/blip_checkpoint.nlvr_from_pretrained).
register(BlipSpec("blip-nlvr-deep", "nlvr", 32, 8, 128, 6, 2, 256, 64, 128, 6, 2, 256, max_positions=32,
                  merge_from=3, sd_num=16, sd_dim=128))
register(BlipSpec("blip-retrieval-deep", "retrieval", 32, 8, 128, 6, 2, 256, 64, 128, 6, 2, 256, max_positions=32,
                  embed_dim=64, sd_num=16, sd_dim=128))
# The same towers at 64 px (64 patches + CLS per image, as the shipped CLIP): 17 tokens per image cap the
# reduction near 63% (docs/RESULTS.md); the above-mean floor leaves far fewer of 65 tokens per layer.
register(BlipSpec("blip-nlvr-deep64", "nlvr", 64, 8, 128, 6, 2, 256, 64, 128, 6, 2, 256, max_positions=32,
                  merge_from=3, sd_num=16, sd_dim=128))
register(BlipSpec("blip-retrieval-deep64", "retrieval", 64, 8, 128, 6, 2, 256, 64, 128, 6, 2, 256,
                  max_positions=32, embed_dim=64, sd_num=16, sd_dim=128))
register(BlipSpec("blip-retrieval-tiny", "retrieval", 32, 8, 128, 2, 2, 256, 64, 128, 2, 2, 256,
                  max_positions=32, embed_dim=64, sd_num=16, sd_dim=128))


Spec = ClipSpec | BlipSpec  # every registered geometry; its family is madtp_deploy.families.of(spec)
