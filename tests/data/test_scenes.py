import json
import random

import torch

from madtp_deploy.data import scenes
from madtp_deploy.data.dataset import load, tokenizer_for
from madtp_deploy.specs import get_spec


def test_generation_is_deterministic(tmp_path):
    a = scenes.generate(tmp_path / "a", 6, 2, 2, seed=3)
    b = scenes.generate(tmp_path / "b", 6, 2, 2, seed=3)
    assert (a / "scenes_test.json").read_text() == (b / "scenes_test.json").read_text()
    assert (a / "images/train_00003.png").read_bytes() == (b / "images/train_00003.png").read_bytes()


def test_blip_format_splits(scenes_dir):
    train = json.loads((scenes_dir / "scenes_train.json").read_text())
    test = json.loads((scenes_dir / "scenes_test.json").read_text())
    assert {"image", "caption", "image_id"} <= set(train[0]) and isinstance(train[0]["caption"], str)
    assert isinstance(test[0]["caption"], list) and len(test[0]["caption"]) == 2
    split = load(scenes_dir, "test")
    assert len(split.images) == 24 and len(split.captions) == 48 and split.txt2img[3] == 1


def test_captions_name_what_is_drawn_and_negatives_differ_in_one_word():
    rng = random.Random(0)
    shapes = [scenes.Shape("circle", "red", "small", 0.2, 0.5), scenes.Shape("square", "blue", "large", 0.8, 0.5)]
    caps = scenes.captions_for(shapes, rng, 2)
    assert set(caps) == {"a small red circle left of a large blue square",
                         "a large blue square right of a small red circle"}
    for c in caps:
        neg = scenes.hard_negative(c, rng)
        assert sum(x != y for x, y in zip(c.split(), neg.split())) == 1


def test_tokenizer_round_trip(scenes_dir):
    tok = tokenizer_for(scenes_dir, get_spec("madtp-clip-tiny"))
    ids, mask = tok(["a small red circle left of a large blue square"])
    assert ids[0, 0] == 62 and ids[0, 11] == 63 and ids[0, 12:].eq(0).all() and mask.all()


def test_pixels_are_clip_normalised(scenes_dir, tmp_path):
    """Bug caught: a missing or wrong CLIP mean/std normalisation (or channel order)."""
    from PIL import Image

    from madtp_deploy.data.retrieval import load_image

    px = load(scenes_dir, "val").pixels(32, [0, 1])
    assert px.shape == (2, 3, 32, 32) and -2.0 < float(px.min()) and float(px.max()) < 2.2
    Image.new("RGB", (40, 40), (255, 128, 0)).save(tmp_path / "solid.png")
    got = load_image(tmp_path / "solid.png", 32, "test")
    want = [(255 / 255 - 0.48145466) / 0.26862954, (128 / 255 - 0.4578275) / 0.26130258,
            (0 - 0.40821073) / 0.27577711]
    for c in range(3):
        assert torch.allclose(got[c], torch.full((32, 32), want[c]), atol=1e-5)
