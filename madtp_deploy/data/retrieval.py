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


def preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """Bicubic resize to a square, CLIP mean/std. [3, size, size] float32."""
    arr = np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    arr = (arr - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_image(path: Path, size: int, where: str) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return preprocess(img, size)
    except FileNotFoundError:
        raise DataError(f"{where}: image {path} not found; fix: check the image root") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where}: image {path} unreadable ({type(exc).__name__}); fix: replace the file") from None


@dataclass
class RetrievalSplit:
    """Images and captions; txt2img[j] is caption j's image, img2txt[i] image i's captions."""
    annotation: Path
    images: list[Path]
    captions: list[str]
    txt2img: list[int]
    img2txt: list[list[int]]

    def pixels(self, size: int, idx=None) -> torch.Tensor:
        idx = range(len(self.images)) if idx is None else idx
        return torch.stack([load_image(self.images[i], size, f"{self.annotation}[{i}]") for i in idx])


def load_split(annotation: Path, image_root: Path | None = None) -> RetrievalSplit:
    """Train files have one caption per entry; val/test files a list per image. Both are accepted."""
    annotation = Path(annotation)
    root = Path(image_root) if image_root else annotation.parent
    entries = read_json(annotation, DataError, "annotation file not found", "check --data, re-write the file")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{annotation}: expected a non-empty JSON list of {{'image', 'caption'}} entries")
    images, index, captions, txt2img, img2txt = [], {}, [], [], []
    for n, e in enumerate(entries):
        where = f"{annotation}[{n}]"
        if not isinstance(e, dict) or "image" not in e or "caption" not in e:
            raise DataError(f"{where}: field 'image' or 'caption' missing; fix: each entry needs both")
        caps = e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
        for c in caps:
            if not isinstance(c, str) or not c.strip():
                raise DataError(f"{where}: empty caption; fix: remove the entry or write a caption")
        path = root / e["image"]
        if not path.is_file():
            raise DataError(f"{where}: image {path} not found; fix: check the image root")
        i = index.setdefault(e["image"], len(images))
        if i == len(images):
            images.append(path)
            img2txt.append([])
        for c in caps:
            img2txt[i].append(len(captions))
            txt2img.append(i)
            captions.append(c)
    return RetrievalSplit(annotation, images, captions, txt2img, img2txt)
