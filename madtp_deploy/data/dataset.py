"""Find a dataset folder's splits and tokenizer; load them into tensors."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..specs import ClipSpec
from .retrieval import RetrievalSplit, load_split
from .tokenize import HFTokenizer, WordTokenizer, openai_bpe_tokenizer


def find_split(data: Path, split: str) -> Path:
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: dataset folder not found; fix: pass --data DIR (make one with "
                        f"`madtp-deploy make-data`)")
    hits = sorted(data.glob(f"*_{split}.json"))
    if not hits:
        raise DataError(f"{data}: no *_{split}.json annotation file; fix: add BLIP-format {split} annotations")
    return hits[0]


def load(data: Path, split: str) -> RetrievalSplit:
    return load_split(find_split(data, split))


def tokenizer_for(data: Path, spec: ClipSpec, tokenizer: Path | None = None):
    """--tokenizer wins (HF directory or OpenAI BPE .txt.gz); else the dataset's vocab.json."""
    if tokenizer is not None:
        tokenizer = Path(tokenizer)
        if tokenizer.is_dir():
            return HFTokenizer(tokenizer, spec.context_length)
        if tokenizer.name.endswith(".gz"):
            return openai_bpe_tokenizer(tokenizer, spec.context_length)
        raise DataError(f"--tokenizer {tokenizer}: not a tokenizer directory or BPE .txt.gz file; fix: pass a "
                        f"Hugging Face tokenizer folder or OpenAI's bpe_simple_vocab_16e6.txt.gz")
    vocab = Path(data) / "vocab.json"
    if not vocab.exists():
        raise DataError(f"{vocab}: no vocabulary; fix: pass --tokenizer (HF directory or OpenAI BPE file)")
    return WordTokenizer.from_file(vocab, spec.vocab_size, spec.context_length)
