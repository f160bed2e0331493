"""A generated, seeded image-caption task in which a caption is only right if the model looks at the
right regions: 1-4 shapes (kind, colour, size, position) on varied backgrounds; captions name kinds,
colours, sizes and spatial relations; hard negatives differ in one attribute.

Written to disk in BLIP's retrieval annotation format (coco_karpathy / flickr30k JSON), so the
generated path and the real-data path are one path.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..files import write_text_atomic

KINDS = ("circle", "square", "triangle", "diamond")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (235, 215, 40),
           "white": (245, 245, 245), "purple": (150, 60, 190)}
SIZES = {"small": 0.13, "large": 0.24}
RELATIONS = ("left of", "right of", "above", "below")
WORDS = ["a", "and"] + list(SIZES) + list(COLOURS) + list(KINDS) + ["left", "right", "of", "above", "below"]
# One BERT vocabulary for every generated task, as BLIP has one (bert-base-uncased) for pre-training and
# each fine-tuning: the captions' words, then the words only the NLVR statements use (data/nlvr.py). So
# a BLIP model pre-trained on scenes reads NLVR statements with the same ids.
STATEMENT_WORDS = ["the", "image", "images", "has", "have", "both", "neither", "more", "shapes", "than", "other"]
BERT_WORDS = WORDS + STATEMENT_WORDS


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str
    x: float
    y: float

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.kind}"


def _relation(a: Shape, b: Shape) -> str:
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def _place(rng: random.Random, n: int) -> list[Shape]:
    shapes: list[Shape] = []
    while len(shapes) < n:
        size = rng.choice(list(SIZES))
        r = SIZES[size]
        x, y = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
        if all(abs(x - s.x) > 0.28 or abs(y - s.y) > 0.28 for s in shapes):
            taken = {(s.kind, s.colour) for s in shapes}
            kind, colour = rng.choice(KINDS), rng.choice(list(COLOURS))
            if (kind, colour) not in taken:
                shapes.append(Shape(kind, colour, size, x, y))
    return shapes


def render(shapes: list[Shape], rng: random.Random, size: int = 64) -> Image.Image:
    base = np.array([rng.randint(0, 90) for _ in range(3)], dtype=np.float32)
    tilt = np.array([rng.uniform(-40, 40) for _ in range(3)], dtype=np.float32)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    grad = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
    bg = base + grad * tilt + np.random.default_rng(rng.randint(0, 2**31)).normal(0, 6, (size, size, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for s in shapes:
        cx, cy, r = s.x * size, s.y * size, SIZES[s.size] * size
        fill = COLOURS[s.colour]
        if s.kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif s.kind == "square":
            draw.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=fill)
        elif s.kind == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    return img


def captions_for(shapes: list[Shape], rng: random.Random, k: int) -> list[str]:
    """k distinct true captions: a relation between two shapes, or one shape alone."""
    options = [s.phrase() for s in shapes] if len(shapes) == 1 else []
    for i, a in enumerate(shapes):
        for j, b in enumerate(shapes):
            if i != j:
                options.append(f"{a.phrase()} {_relation(a, b)} {b.phrase()}")
    rng.shuffle(options)
    return [options[i % len(options)] for i in range(k)]


def hard_negative(caption: str, rng: random.Random) -> str:
    """The caption with one attribute changed (colour, kind, size or relation)."""
    words = caption.split()
    slots = [i for i, w in enumerate(words) if w in COLOURS or w in KINDS or w in SIZES or w in ("left", "right", "above", "below")]
    i = rng.choice(slots)
    w = words[i]
    pool = next(p for p in (list(COLOURS), list(KINDS), list(SIZES), ["left", "right"], ["above", "below"]) if w in p)
    words[i] = rng.choice([p for p in pool if p != w])
    return " ".join(words)


def generate(root: Path, n_train: int = 4000, n_val: int = 300, n_test: int = 500, seed: int = 0,
             image_size: int = 64, captions_per_test_image: int = 2) -> Path:
    """Write images/ and BLIP-format annotation JSONs (train / val / test) under root, with the task's
    vocabulary twice: vocab.json (CLIP's word tokenizer) and vocab.txt (BLIP's BERT WordPiece
    tokenizer, see `bert_vocab`). Deterministic."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    splits = {"train": n_train, "val": n_val, "test": n_test}
    for split, n in splits.items():
        entries: list[dict] = []
        for i in range(n):
            shapes = _place(rng, rng.randint(1, 4))
            rel = f"images/{split}_{i:05d}.png"
            render(shapes, rng, image_size).save(root / rel)
            if split == "train":
                for c in captions_for(shapes, rng, 2):
                    entries.append({"image": rel, "caption": c, "image_id": f"{split}_{i}"})
            else:
                caps = captions_for(shapes, rng, captions_per_test_image)
                entries.append({"image": rel, "caption": caps,
                                "hard_negatives": [hard_negative(c, rng) for c in caps]})
        write_text_atomic(root / f"scenes_{split}.json", json.dumps(entries, indent=1))
    (root / "vocab.json").write_text(json.dumps({"words": WORDS}))  # CLIP's word tokenizer
    write_text_atomic(root / "vocab.txt", bert_vocab(BERT_WORDS))   # BLIP's BlipTokenizer
    return root


BERT_SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # in bert-base-uncased's order


def bert_vocab(words: list[str], vocab_size: int = 64) -> str:
    """A WordPiece vocab.txt for BlipTokenizer: BERT's special tokens, the task's words, then [unusedN]
    padding so that the [DEC] and [ENC] BlipTokenizer adds become the last two of `vocab_size` ids,
    as in BLIP (the blip-*-tiny specs have vocab_size 64, [ENC] = 63)."""
    vocab = BERT_SPECIALS + list(words)
    vocab += [f"[unused{i}]" for i in range(1, vocab_size - 2 - len(vocab) + 1)]
    return "\n".join(vocab) + "\n"
