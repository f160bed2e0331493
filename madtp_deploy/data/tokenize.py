"""Tokenizers from local files: a word-level one (the generated task), OpenAI CLIP's BPE from its
vocab file (bpe_simple_vocab_16e6.txt.gz) and Hugging Face tokenizers from a local directory."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

from ..errors import DataError


def labels(captions: list, where) -> list[str]:
    """Per-caption names for errors: `where` is one name (captions become where[i]) or a list of names."""
    if isinstance(where, (list, tuple)):
        return list(where)
    return [f"{where}[{i}]" for i in range(len(captions))]


def check_captions(captions: list, names: list[str]) -> None:
    for c, name in zip(captions, names):
        if not isinstance(c, str):
            raise DataError(f"{name}: caption is {c!r} ({type(c).__name__}), expected a string; fix: write it as text")
        if not c.strip():
            raise DataError(f"{name}: empty caption; fix: remove the entry or write a caption")


class WordTokenizer:
    """ids: 0 pad, 1.. words, vocab-2 SOT, vocab-1 EOT (so OpenAI's argmax EOT rule also holds)."""

    def __init__(self, words: list[str], vocab_size: int, context_length: int):
        if len(words) + 3 > vocab_size:
            raise DataError(f"vocab: {len(words)} words do not fit vocab_size {vocab_size} (3 ids are special); "
                            f"fix: use a model with a larger vocabulary or a smaller word list")
        self.index = {w: i + 1 for i, w in enumerate(words)}
        self.sot, self.eot, self.context_length = vocab_size - 2, vocab_size - 1, context_length

    @classmethod
    def from_file(cls, path: Path, vocab_size: int, context_length: int) -> "WordTokenizer":
        try:
            words = json.loads(Path(path).read_text())["words"]
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise TypeError
        except FileNotFoundError as exc:
            raise DataError(f"{path}: vocabulary file missing; fix: generate the dataset again") from exc
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: field 'words' missing or invalid; fix: a JSON object {{'words': [...]}}") from exc
        return cls(words, vocab_size, context_length)

    def encode(self, caption: str, where: str = "caption") -> list[int]:
        words = caption.lower().split()
        if not words:
            raise DataError(f"{where}: empty caption; fix: remove the entry or write a caption")
        unknown = [w for w in words if w not in self.index]
        if unknown:
            raise DataError(f"{where}: unknown word(s) {', '.join(unknown[:5])}; fix: use the dataset's vocabulary")
        ids = [self.sot] + [self.index[w] for w in words] + [self.eot]
        if len(ids) > self.context_length:
            raise DataError(f"{where}: caption has {len(ids)} tokens, more than the context {self.context_length}; "
                            f"fix: shorten it")
        return ids

    def __call__(self, captions: list[str], where="captions") -> tuple[torch.Tensor, torch.Tensor]:
        names = labels(captions, where)
        check_captions(captions, names)
        ids = torch.zeros(len(captions), self.context_length, dtype=torch.long)
        for i, c in enumerate(captions):
            row = self.encode(c, names[i])
            ids[i, :len(row)] = torch.tensor(row)
        return ids, torch.ones_like(ids)  # OpenAI style: zero padding, causal mask, all-ones attention mask


class HFTokenizer:
    """A transformers tokenizer from a local directory (CLIPTokenizer files), padded to the context."""

    def __init__(self, directory: Path, context_length: int):
        from transformers import AutoTokenizer
        try:
            self.tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{directory}: no usable tokenizer files ({type(exc).__name__}); fix: pass a "
                            f"directory with tokenizer.json or vocab.json + merges.txt") from exc
        self.context_length = context_length

    def __call__(self, captions: list[str], where="captions"):
        names = labels(captions, where)
        check_captions(captions, names)
        enc = self.tok(captions, padding="max_length", max_length=self.context_length, truncation=False,
                       return_tensors="pt")
        if enc["input_ids"].shape[1] > self.context_length:
            lengths = enc["attention_mask"].sum(1)
            i = int(lengths.argmax())
            raise DataError(f"{names[i]}: caption has {int(lengths[i])} tokens, more than the context "
                            f"{self.context_length}; fix: shorten it")
        return enc["input_ids"], enc["attention_mask"]


def openai_bpe_tokenizer(bpe_path: Path, context_length: int = 77) -> HFTokenizer:
    """OpenAI CLIP's BPE from its local merges file, through transformers' CLIPTokenizer."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    try:
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1:49152 - 256 - 2 + 1]
    except (OSError, EOFError) as exc:
        raise DataError(f"{bpe_path}: not a readable gzip BPE vocabulary ({exc}); fix: pass "
                        f"bpe_simple_vocab_16e6.txt.gz") from exc
    merges = [tuple(m.split()) for m in lines if m]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    tok = HFTokenizer.__new__(HFTokenizer)
    tok.tok = CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges)  # type: ignore[arg-type]  # pairs are accepted
    tok.context_length = context_length
    return tok
