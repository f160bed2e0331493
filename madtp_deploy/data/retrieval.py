"""BLIP retrieval annotation files (coco_karpathy / flickr30k JSON) + an image root, with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..files import read_json

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


_MEAN, _STD = np.array(CLIP_MEAN, dtype=np.float32), np.array(CLIP_STD, dtype=np.float32)


def preprocess_array(img: Image.Image, size: int) -> np.ndarray:
    """Bicubic resize to a square (none when it is one already: PIL's resize to the same size is a copy),
    CLIP mean/std. [3, size, size] float32, in numpy (the embedding loop's per-image cost)."""
    rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    arr = (np.asarray(rgb, dtype=np.float32) / np.float32(255.0) - _MEAN) / _STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """`preprocess_array` as a tensor."""
    return torch.from_numpy(preprocess_array(img, size))


def load_image(path: Path, size: int, where: str) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return preprocess(img, size)
    except FileNotFoundError as exc:
        raise DataError(f"{where}: image {path} not found; fix: check the image root") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where}: image {path} unreadable ({type(exc).__name__}); fix: replace the file") from exc


@dataclass
class RetrievalSplit:
    """Images and captions; txt2img[j] is caption j's image, img2txt[i] image i's captions."""
    annotation: Path
    images: list[Path]
    captions: list[str]
    txt2img: list[int]
    img2txt: list[list[int]]
    caption_where: list[str] | None = None  # "file[entry]" (or "file[entry].caption[k]") per caption

    def tokenize(self, tokenizer, idx=None):
        """(input_ids, attention_mask) of the captions `idx` (default all); errors name the entry."""
        idx = range(len(self.captions)) if idx is None else idx
        where = self.caption_where or [f"{self.annotation} caption {j}" for j in range(len(self.captions))]
        return tokenizer([self.captions[j] for j in idx], where=[where[j] for j in idx])

    def pixels(self, size: int, idx=None) -> torch.Tensor:
        idx = range(len(self.images)) if idx is None else idx
        return torch.stack([load_image(self.images[i], size, f"{self.annotation}[{i}]") for i in idx])


def load_split(annotation: Path, image_root: Path | None = None) -> RetrievalSplit:
    """Train files have one caption per entry; val/test files a list per image. Both are accepted."""
    annotation = Path(annotation)
    root = Path(image_root) if image_root else annotation.parent
    entries = read_json(annotation, DataError, "annotation file not found", "check --data, re-write the file")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{annotation}: expected a non-empty JSON list of {{'image', 'caption'}} entries; "
                        f"fix: write BLIP's retrieval annotation format (see `madtp-deploy make-data`)")
    images: list[Path] = []
    index: dict[str, int] = {}
    captions: list[str] = []
    txt2img: list[int] = []
    img2txt: list[list[int]] = []
    caption_where: list = []
    for n, e in enumerate(entries):
        where = f"{annotation}[{n}]"
        if not isinstance(e, dict) or "image" not in e or "caption" not in e:
            raise DataError(f"{where}: field 'image' or 'caption' missing; fix: each entry needs both")
        if not isinstance(e["image"], str) or not e["image"].strip():
            raise DataError(f"{where}: field 'image' is {e['image']!r}, expected a path string relative to "
                            f"{root}; fix: write the image's file name")
        many = isinstance(e["caption"], list)
        caps = e["caption"] if many else [e["caption"]]
        if not caps:
            raise DataError(f"{where}: field 'caption' is an empty list; fix: write at least one caption")
        for k, c in enumerate(caps):
            field = f"caption[{k}]" if many else "caption"
            if not isinstance(c, str):
                raise DataError(f"{where}: field '{field}' is {c!r} ({type(c).__name__}), expected a string; "
                                f"fix: write the caption as text")
            if not c.strip():
                raise DataError(f"{where}: empty caption (field '{field}'); fix: remove the entry or write a caption")
        path = root / e["image"]
        if not path.is_file():
            raise DataError(f"{where}: image {path} not found; fix: check the image root")
        i = index.setdefault(e["image"], len(images))
        if i == len(images):
            images.append(path)
            img2txt.append([])
        for k, c in enumerate(caps):
            img2txt[i].append(len(captions))
            txt2img.append(i)
            captions.append(c)
            caption_where.append(f"{where}.caption[{k}]" if many else f"{where}.caption")
    return RetrievalSplit(annotation, images, captions, txt2img, img2txt, caption_where)
