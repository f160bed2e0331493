"""What a served model does with a batch of requests, without Triton: decode each request (encoded
images -> the project's preprocessing, captions -> the model's own tokenizer), refuse a bad one with
an error naming the input and the fix, run the good ones as ONE batch of the packed graph, split the
outputs back per request and add each request's own GFLOPs.

The generated model.py (template.py) is a thin adapter from Triton's python backend to `Handler`;
the tests drive `Handler` directly as well.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..errors import MadtpError
from .table import served

# refused before decoding: a server must not let one request take its memory
DEFAULT_LIMITS = {"max_image_bytes": 20_000_000, "max_image_pixels": 4096 * 4096, "max_text_bytes": 2000}


class RequestError(MadtpError):
    """A request the server answers with an error; the message names the input and the fix."""


def _bytes(item, where: str) -> bytes:
    if isinstance(item, (bytes, np.bytes_)):
        return bytes(item)
    raise RequestError(f"{where}: got {type(item).__name__}, expected BYTES; fix: send the file's bytes as a "
                       f"BYTES tensor of shape [n, 1]")


def decode_image(data: bytes, size: int, where: str, limits: dict) -> np.ndarray:
    """An encoded PNG/JPEG -> CLIP-normalised pixels [3, size, size] (data/retrieval.preprocess)."""
    from PIL import Image, UnidentifiedImageError

    from ..data.retrieval import preprocess

    if not data:
        raise RequestError(f"{where}: empty image; fix: send the bytes of a PNG or JPEG file")
    if len(data) > limits["max_image_bytes"]:
        raise RequestError(f"{where}: {len(data):,} bytes, more than the server's {limits['max_image_bytes']:,}; "
                           f"fix: resize the image before sending it")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > limits["max_image_pixels"]:
                raise RequestError(f"{where}: {w}x{h} pixels ({w * h / 1e6:.1f} MP), more than the server's "
                                   f"{limits['max_image_pixels'] / 1e6:.1f} MP; fix: resize the image (the model "
                                   f"sees {size}x{size}) before sending it")
            img.load()
            return preprocess(img, size).numpy()
    except RequestError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        why = "not an image format Pillow knows" if isinstance(exc, UnidentifiedImageError) else \
            (str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
        raise RequestError(f"{where}: not a readable PNG/JPEG image ({why}); fix: send the complete bytes of "
                           f"an encoded image file") from exc


def decode_text(data: bytes, where: str, limits: dict) -> str:
    if len(data) > limits["max_text_bytes"]:
        raise RequestError(f"{where}: {len(data):,} bytes of text, more than the server's "
                           f"{limits['max_text_bytes']:,}; fix: send a caption, not a document")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start}); fix: encode the "
                           f"caption as UTF-8") from exc
    if not text.strip():
        raise RequestError(f"{where}: empty caption; fix: send a caption with at least one word")
    return text


def load_tokenizer(spec, cfg: dict, version_dir: Path):
    """The model's own tokenizer from the files the repository carries: (captions, where) -> (ids, mask)."""
    from ..data import dataset
    from ..onnx.io import BLIP_TEXT_TOKENS

    kind, path = cfg["kind"], version_dir / cfg["path"]
    if kind in ("words", "bpe", "hf"):
        # the shipped model's vocabulary (vocab.json), OpenAI's BPE file or a Hugging Face tokenizer folder
        tok = dataset.tokenizer_for(path, spec) if kind == "words" else dataset.tokenizer_for(path.parent, spec, path)
        return lambda captions, name: tok(captions, where=[f"{name}[{i}]" for i in range(len(captions))])
    from ..data.bert_tokenizer import BlipTokenizer

    tok = BlipTokenizer(path, max_length=min(spec.max_positions, BLIP_TEXT_TOKENS))
    enc = kind == "wordpiece-enc"
    return lambda captions, name: tok(captions, enc=enc, where=name)


class Handler:
    """One served graph, opened from `<model>/<version>/serve.json` (written by repository.py)."""

    def __init__(self, version_dir: Path, repository: Path):
        from ..onnx.io import encoder_io
        from ..runtime import open_session
        from ..specs import spec_from_dict

        version_dir = Path(version_dir)
        cfg = json.loads((version_dir / "serve.json").read_text())
        onnx = Path(repository) / cfg["onnx"]
        side = json.loads(onnx.with_suffix(".json").read_text())
        self.spec = spec_from_dict(side["model"]["spec"])
        self.pruning = side["model"]["temperature"] > 0
        self.max_batch = side.get("max_batch", 64)
        self.served = served(cfg["family"], cfg["encoder"])
        self.io = encoder_io(self.spec, cfg["encoder"])
        self.limits = dict(DEFAULT_LIMITS, **cfg.get("limits", {}))
        self.session = open_session(onnx, "ort", threads=cfg.get("threads"))
        has_text = any(kind == "text" for kind, _ in self.served.inputs.values())
        self.tokenize = load_tokenizer(self.spec, cfg["tokenizer"], version_dir) if has_text else None

    def prepare(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request's inputs (name -> BYTES array [n, 1]) -> the graph's feeds; RequestError if bad."""
        feeds, count = {}, None
        for name, (kind, graph_names) in self.served.inputs.items():
            if inputs.get(name) is None:
                raise RequestError(f"{name}: input missing; fix: send {', '.join(self.served.inputs)}")
            items = np.asarray(inputs[name], dtype=object).reshape(-1)
            if count is not None and len(items) != count:
                raise RequestError(f"{name}: {len(items)} items, the other inputs have {count}; fix: send one "
                                   f"{name} per instance")
            count = len(items)
            if not 1 <= count <= self.max_batch:
                raise RequestError(f"{name}: {count} items in one request; fix: send 1 to {self.max_batch}")
            where = [f"{name}[{i}]" for i in range(count)]
            data = [_bytes(x, w) for x, w in zip(items, where)]
            if kind == "image":
                size = self.spec.image_size
                feeds[graph_names[0]] = np.stack([decode_image(d, size, w, self.limits) for d, w in zip(data, where)])
            else:
                captions = [decode_text(d, w, self.limits) for d, w in zip(data, where)]
                try:
                    assert self.tokenize is not None  # a graph with text inputs has its tokenizer
                    ids, mask = self.tokenize(captions, name)
                except MadtpError as exc:  # unknown words, too long, ...: the tokenizer's own message
                    raise RequestError(str(exc)) from exc
                feeds[graph_names[0]], feeds[graph_names[1]] = ids.numpy(), mask.numpy()
        try:
            self.io.check(self.spec, feeds)  # the model's own input checks, per request
        except MadtpError as exc:
            raise RequestError(f"{', '.join(self.served.inputs)}: {exc}") from exc
        return feeds

    def run(self, prepared: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """The prepared requests as one batch (chunks of the graph's max batch) -> one output dict each."""
        sizes = [len(next(iter(p.values()))) for p in prepared]
        feeds = {k: np.concatenate([p[k] for p in prepared]) for k in prepared[0]}
        total, outs = sum(sizes), []
        for s in range(0, total, self.max_batch):
            chunk = {k: v[s:s + self.max_batch] for k, v in feeds.items()}
            out = self.session.run(chunk)
            out["GFLOPS"] = np.asarray(self.served.gflops(self.spec, out, chunk, self.pruning), np.float32)
            outs.append(out)
        merged = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        answers, start = [], 0
        for n in sizes:
            a = {name: merged[graph][start:start + n] for name, graph in self.served.outputs.items()}
            a["GFLOPS"] = merged["GFLOPS"][start:start + n, None]
            # Triton's python backend takes int64 only as numpy.int64 (onnxruntime hands back longlong)
            answers.append({k: (np.ascontiguousarray(v).view(np.int64) if v.dtype.kind == "i" else v)
                            for k, v in a.items()})
            start += n
        return answers
