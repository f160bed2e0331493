"""BLIP's text tokenizer: BERT WordPiece (bert-base-uncased) from a local directory, plus the two
tokens BLIP adds ([DEC] as bos, [ENC] as an additional special token). Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError


class BlipTokenizer:
    """`tok(texts) -> (input_ids, attention_mask)`, padded to the longest text (as the reference's NLVR2),
    or to `max_length` (retrieval: 35). `enc=True` puts [ENC] at position 0, as BLIP's fusion encoder wants."""

    def __init__(self, directory: Path, max_length: int | None = None):
        from transformers import BertTokenizer

        directory = Path(directory)
        if not (directory / "vocab.txt").is_file():
            raise DataError(f"{directory}: no vocab.txt; fix: pass a directory with bert-base-uncased's vocab.txt")
        try:
            self.tok = BertTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises many types for bad files
            raise DataError(f"{directory}/vocab.txt: not a usable WordPiece vocabulary ({type(exc).__name__}); "
                            f"fix: pass bert-base-uncased's vocab.txt") from exc
        self.tok.add_special_tokens({"bos_token": "[DEC]"})
        self.tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        self.dec_id, self.enc_id = self.tok.convert_tokens_to_ids(["[DEC]", "[ENC]"])
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.tok)

    def __call__(self, texts: list[str], enc: bool = True, where: str = "texts") -> tuple[torch.Tensor, torch.Tensor]:
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"{where}[{i}]: empty text; fix: remove the entry or write a sentence")
        if self.max_length:
            e = self.tok(texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        else:
            e = self.tok(texts, padding="longest", return_tensors="pt")
        ids = e["input_ids"].clone()
        if enc:
            ids[:, 0] = self.enc_id
        return ids, e["attention_mask"]
