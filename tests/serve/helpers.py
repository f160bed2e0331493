"""Requests the serving tests send: generated PNGs, bad bytes, and local batch-1 answers."""

import struct
import zlib

import numpy as np

from madtp_deploy.data import scenes
from madtp_deploy.data.scenes import WORDS
from madtp_deploy.files import temp_dir
from madtp_deploy.runtime import open_session
from madtp_deploy.serve.handler import DEFAULT_LIMITS, decode_image

from ..shipped_artifacts import MODEL

CAPTIONS = ["a red circle", "a large blue square left of a small red circle", "a small green triangle above "
            "a large white diamond", "a yellow square", "a purple circle below a small red square"]


def pngs(n: int, size: int = 64, seed: int = 7) -> list[bytes]:
    with temp_dir("serve-test-") as root:
        scenes.generate(root, n_train=0, n_val=0, n_test=n, seed=seed, image_size=size)
        return [p.read_bytes() for p in sorted((root / "images").glob("*.png"))]


def huge_png_header(width: int = 8660, height: int = 5774) -> bytes:
    """A PNG whose header says 50 megapixels (the pixel data never follows): what a server must refuse
    before it decodes anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def bad_images(good: bytes) -> dict[str, bytes]:
    return {"corrupt": b"this is not an image" * 10, "truncated": good[: len(good) // 3],
            "50 megapixels": huge_png_header(), "empty": b""}


BAD_CAPTIONS = {"empty": b"", "blank": b"   ", "another alphabet": "красный круг".encode(),
                "not utf-8": b"\xff\xfe a red circle", "too long": ("a " * 40 + "circle").encode()}


def local_image_answers(repo, images: list[bytes]) -> dict:
    """Batch-1 onnxruntime answers of the served graph file, one image at a time."""
    s = open_session(repo / "image_onnx" / "1" / "model.onnx", "ort")
    out = [s.run({"pixels": decode_image(p, 64, "x", DEFAULT_LIMITS)[None]}) for p in images]
    return {k: np.concatenate([o[k] for o in out]) for k in ("embeds", "kept")}


def local_text_answers(repo, captions: list[str]) -> dict:
    from madtp_deploy.data.tokenize import WordTokenizer
    import madtp_deploy

    spec = madtp_deploy.load(MODEL).spec
    tok = WordTokenizer(WORDS, spec.vocab_size, spec.context_length)
    s = open_session(repo / "text_onnx" / "1" / "model.onnx", "ort")
    out = []
    for c in captions:
        ids, mask = tok([c])
        out.append(s.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()}))
    return {k: np.concatenate([o[k] for o in out]) for k in ("embeds", "kept")}
