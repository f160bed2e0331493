"""The served model's logic without Triton (serve/handler.py): decoding, per-request errors, one
packed batch split back per request, int64 keep counts, each request's own GFLOPs."""

import numpy as np
import pytest
import torch

from madtp_deploy import flops
from madtp_deploy.serve.handler import Handler, RequestError

from .helpers import BAD_CAPTIONS, CAPTIONS, bad_images, local_image_answers, local_text_answers, pngs


@pytest.fixture(scope="module")
def image_handler(shipped_repo):
    return Handler(shipped_repo / "image" / "1", shipped_repo)


@pytest.fixture(scope="module")
def text_handler(shipped_repo):
    return Handler(shipped_repo / "text" / "1", shipped_repo)


def _bytes(items):
    return np.array(items, dtype=object).reshape(-1, 1)


def test_batched_requests_equal_batch1(shipped_repo, image_handler):
    images = pngs(9)
    requests = [images[0:1], images[1:4], images[4:6], images[6:9]]  # 1-3 images each, one batch of 9
    answers = image_handler.run([image_handler.prepare({"IMAGE": _bytes(r)}) for r in requests])
    ref = local_image_answers(shipped_repo, images)
    got = {k: np.concatenate([a[k] for a in answers]) for k in ("EMBEDS", "KEPT", "GFLOPS")}
    assert [len(a["EMBEDS"]) for a in answers] == [1, 3, 2, 3]
    np.testing.assert_allclose(got["EMBEDS"], ref["embeds"], atol=1e-4)
    np.testing.assert_array_equal(got["KEPT"], ref["kept"])
    assert len(set(map(tuple, ref["kept"]))) > 1, "the images must prune differently"
    assert all(a["KEPT"].dtype.type is np.int64 for a in answers)  # Triton's python backend wants numpy.int64
    own = flops.image_gflops(image_handler.spec, torch.from_numpy(ref["kept"]), True).numpy()
    np.testing.assert_allclose(got["GFLOPS"][:, 0], own, rtol=1e-6)  # each image's own, not the batch's


def test_text_requests_equal_batch1(shipped_repo, text_handler):
    answers = text_handler.run([text_handler.prepare({"TEXT": _bytes([c.encode()])}) for c in CAPTIONS])
    ref = local_text_answers(shipped_repo, CAPTIONS)
    np.testing.assert_allclose(np.concatenate([a["EMBEDS"] for a in answers]), ref["embeds"], atol=1e-4)
    np.testing.assert_array_equal(np.concatenate([a["KEPT"] for a in answers]), ref["kept"])
    gf = np.concatenate([a["GFLOPS"] for a in answers])[:, 0]
    assert gf[0] < gf[1]  # a longer caption pays for its own tokens


@pytest.mark.parametrize("what,why", [("corrupt", "not a readable PNG/JPEG"), ("truncated", "truncated"),
                                      ("50 megapixels", r"8660x5774 pixels \(50.0 MP\), more than"),
                                      ("empty", "empty image")])
def test_bad_image_names_the_input_and_the_fix(image_handler, what, why):
    good = pngs(1)[0]
    with pytest.raises(RequestError, match=rf"^IMAGE\[1\]: .*{why}.*fix: ") as e:
        image_handler.prepare({"IMAGE": _bytes([good, bad_images(good)[what]])})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("what", sorted(BAD_CAPTIONS))
def test_bad_caption_names_the_input_and_the_fix(text_handler, what):
    with pytest.raises(RequestError, match=r"TEXT\[0\]: .*fix: "):
        text_handler.prepare({"TEXT": _bytes([BAD_CAPTIONS[what]])})


def test_wrong_python_type_and_count(image_handler):
    with pytest.raises(RequestError, match=r"IMAGE\[0\]: got float, expected BYTES"):
        image_handler.prepare({"IMAGE": np.array([[1.5]], dtype=object)})
    with pytest.raises(RequestError, match="IMAGE: input missing"):
        image_handler.prepare({})
    with pytest.raises(RequestError, match="65 items in one request"):
        image_handler.prepare({"IMAGE": _bytes([b"x"] * 65)})
