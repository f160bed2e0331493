"""NLVR2: two images, a statement, a label (is the statement true of the pair?).

Reads BLIP's NLVR2 annotation files (nlvr_train.json, nlvr_dev.json, nlvr_test.json: a list of
{'images': [left, right], 'sentence': str, 'label': 'True' | 'False'}) with an image root, and writes
an NLVR-style version of the generated scenes task in the same format, so the generated path and
the real-data path are one path. Statements are normalised as the reference's `pre_caption` does.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError
from ..files import read_json, write_text_atomic
from . import scenes
from .retrieval import load_image

MAX_WORDS = 40  # the reference's pre_caption(sentence, 40)
SPLIT_FILES = {"train": ("train",), "val": ("val", "dev"), "test": ("test",)}


def pre_caption(text: str, max_words: int = MAX_WORDS) -> str:
    """Lower case, punctuation .!"()*#:;~ to spaces, spaces collapsed, at most max_words words."""
    text = re.sub(r"\s{2,}", " ", re.sub(r"([.!\"()*#:;~])", " ", text.lower())).strip()
    return " ".join(text.split(" ")[:max_words])


@dataclass
class NlvrSplit:
    annotation: Path
    images: list[tuple[Path, Path]]
    sentences: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.sentences)

    def pixels(self, size: int, idx=None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = range(len(self)) if idx is None else idx
        pairs = [[load_image(p, size, f"{self.annotation}[{i}]") for p in self.images[i]] for i in idx]
        return torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])

    def targets(self) -> torch.Tensor:
        return torch.tensor(self.labels, dtype=torch.long)


def _label(value, where: str) -> int:
    if value in ("True", True, 1, "true"):
        return 1
    if value in ("False", False, 0, "false"):
        return 0
    raise DataError(f"{where}: field 'label' is {value!r}; fix: 'True' or 'False'")


def load_split(annotation: Path, image_root: Path | None = None) -> NlvrSplit:
    annotation = Path(annotation)
    root = Path(image_root) if image_root else annotation.parent
    entries = read_json(annotation, DataError, "annotation file not found", "check --data, re-write the file")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{annotation}: expected a non-empty JSON list of {{'images', 'sentence', 'label'}} entries")
    images, sentences, labels = [], [], []
    for n, e in enumerate(entries):
        where = f"{annotation}[{n}]"
        if not isinstance(e, dict) or not {"images", "sentence", "label"} <= e.keys():
            raise DataError(f"{where}: field 'images', 'sentence' or 'label' missing; fix: each entry needs all three")
        if not isinstance(e["images"], list) or len(e["images"]) != 2:
            raise DataError(f"{where}: field 'images' must list exactly two image paths; fix: [left, right]")
        if not isinstance(e["sentence"], str) or not pre_caption(e["sentence"]):
            raise DataError(f"{where}: empty sentence; fix: remove the entry or write a statement")
        pair = tuple(root / p for p in e["images"])
        for p in pair:
            if not p.is_file():
                raise DataError(f"{where}: image {p} not found; fix: check the image root")
        images.append(pair)
        sentences.append(pre_caption(e["sentence"]))
        labels.append(_label(e["label"], where))
    return NlvrSplit(annotation, images, sentences, labels)


def find_split(data: Path, split: str) -> Path:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: dataset folder not found; fix: pass --data DIR (make one with "
                        f"`madtp-deploy make-data --task nlvr`)")
    for name in SPLIT_FILES.get(split, (split,)):
        hits = sorted(data.glob(f"nlvr*_{name}.json"))
        if hits:
            return hits[0]
    raise DataError(f"{data}: no nlvr_{split}.json annotation file; fix: add BLIP-format NLVR2 {split} annotations")


def is_nlvr_dir(data: Path) -> bool:
    return Path(data).is_dir() and any(Path(data).glob("nlvr*_*.json"))


def load(data: Path, split: str) -> NlvrSplit:
    return load_split(find_split(data, split))


# -- the generated NLVR-style task ----------------------------------------------------------------

SIDES = ("left", "right")
TEMPLATES = ("side", "both", "neither", "more")


def _has(shapes: list, colour: str, kind: str) -> bool:
    return any(s.colour == colour and s.kind == kind for s in shapes)


def _statement(rng: random.Random, pair: list[list], t: str | None = None) -> tuple[str, bool]:
    """One statement about the pair and its truth: which side has an object, both, neither, counts."""
    t = t or rng.choice(TEMPLATES)
    if t == "more":
        side = rng.randrange(2)
        return (f"the {SIDES[side]} image has more shapes than the other",
                len(pair[side]) > len(pair[1 - side]))
    pool = [s for shapes in pair for s in shapes]
    pick = rng.choice(pool) if rng.random() < 0.6 else None
    colour = pick.colour if pick else rng.choice(list(scenes.COLOURS))
    kind = pick.kind if pick else rng.choice(scenes.KINDS)
    has = [_has(shapes, colour, kind) for shapes in pair]
    if t == "side":
        side = rng.randrange(2)
        return f"the {SIDES[side]} image has a {colour} {kind}", has[side]
    if t == "both":
        return f"both images have a {colour} {kind}", all(has)
    return f"neither image has a {colour} {kind}", not any(has)


def _placed(rng: random.Random, n: int) -> list:
    """n shapes that do not overlap, distinct (kind, colour) within the image."""
    shapes: list = []
    while len(shapes) < n:
        size = rng.choice(list(scenes.SIZES))
        r = scenes.SIZES[size]
        x, y = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
        kind, colour = rng.choice(scenes.KINDS), rng.choice(list(scenes.COLOURS))
        if all(abs(x - s.x) > 0.3 or abs(y - s.y) > 0.3 for s in shapes) and not _has(shapes, colour, kind):
            shapes.append(scenes.Shape(kind, colour, size, x, y))
    return shapes


def generate(root: Path, n_train: int = 4000, n_val: int = 300, n_test: int = 500, seed: int = 0,
             image_size: int = 32, vocab_size: int = 64) -> Path:
    """Write images/ and nlvr_{train,dev,test}.json (BLIP's NLVR2 format, labels balanced) and a
    WordPiece vocab.txt for BlipTokenizer under root (the one vocabulary of the generated tasks,
    scenes.BERT_WORDS), padded so that [DEC] and [ENC] become the last two of `vocab_size` ids, as in
    BLIP. Deterministic for a seed."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, name, n in (("train", "train", n_train), ("val", "dev", n_val), ("test", "test", n_test)):
        entries = []
        for i in range(n):
            # balanced labels within every template, so the statement alone says nothing
            template, want = TEMPLATES[i % len(TEMPLATES)], (i // len(TEMPLATES)) % 2 == 0
            while True:
                pair = [_placed(rng, rng.randint(1, 3)) for _ in range(2)]
                sentence, truth = _statement(rng, pair, template)
                if truth == want:
                    break
            rels = []
            for side, shapes in zip(SIDES, pair):
                rel = f"images/{split}_{i:05d}_{side}.png"
                scenes.render(shapes, rng, image_size).save(root / rel)
                rels.append(rel)
            entries.append({"images": rels, "sentence": sentence, "label": str(truth)})
        rng.shuffle(entries)
        write_text_atomic(root / f"nlvr_{name}.json", json.dumps(entries, indent=1))
    write_text_atomic(root / "vocab.txt", scenes.bert_vocab(scenes.BERT_WORDS, vocab_size))
    return root
