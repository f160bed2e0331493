"""Bad datasets: one-line errors naming the file and the entry."""

import json
import shutil
import subprocess
import sys

import pytest

from madtp_deploy.data.dataset import load, tokenizer_for
from madtp_deploy.data.tokenize import openai_bpe_tokenizer
from madtp_deploy.errors import DataError
from madtp_deploy.specs import get_spec


def _copy(scenes_dir, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(scenes_dir, d)
    return d


def _rewrite(d, fn):
    f = d / "scenes_test.json"
    entries = json.loads(f.read_text())
    fn(entries)
    f.write_text(json.dumps(entries))


def test_missing_image(scenes_dir, tmp_path):
    d = _copy(scenes_dir, tmp_path)
    (d / "images/test_00002.png").unlink()
    with pytest.raises(DataError, match=r"scenes_test.json\[2\]: image .*test_00002.png not found"):
        load(d, "test")


def test_unreadable_image(scenes_dir, tmp_path):
    d = _copy(scenes_dir, tmp_path)
    (d / "images/test_00001.png").write_bytes(b"not a png")
    split = load(d, "test")
    with pytest.raises(DataError, match=r"\[1\]: image .* unreadable"):
        split.pixels(32)


def test_empty_caption_and_malformed_entries(scenes_dir, tmp_path):
    d = _copy(scenes_dir, tmp_path)
    _rewrite(d, lambda e: e[4].__setitem__("caption", ["  "]))
    with pytest.raises(DataError, match=r"\[4\]: empty caption"):
        load(d, "test")
    _rewrite(d, lambda e: (e[4].__setitem__("caption", ["a red circle"]), e[5].pop("image")))
    with pytest.raises(DataError, match=r"\[5\]: field 'image' or 'caption' missing"):
        load(d, "test")
    (d / "scenes_test.json").write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON"):
        load(d, "test")


def test_caption_longer_than_context(scenes_dir):
    tok = tokenizer_for(scenes_dir, get_spec("madtp-clip-tiny"))
    with pytest.raises(DataError, match=r"caps\[1\]: caption has 20 tokens, more than the context 16"):
        tok(["a red circle", " ".join(["a"] * 18)], where="caps")


def test_bad_paths(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        load(tmp_path / "nope", "test")
    with pytest.raises(DataError, match="not a readable gzip BPE"):
        (tmp_path / "bpe.txt.gz").write_bytes(b"xx")
        openai_bpe_tokenizer(tmp_path / "bpe.txt.gz")


def test_openai_bpe_from_a_local_vocab_file(tmp_path):
    """A small BPE merges file in OpenAI's format (gzip, header line, one merge per line)."""
    import gzip
    merges = ["#version", "c a", "ca t</w>", "d o", "do g</w>"]
    with gzip.open(tmp_path / "bpe.txt.gz", "wt") as f:
        f.write("\n".join(merges) + "\n")
    tok = openai_bpe_tokenizer(tmp_path / "bpe.txt.gz", context_length=8)
    ids, mask = tok(["cat dog"])
    vocab = tok.tok.get_vocab()
    assert ids[0, :4].tolist() == [vocab["<|startoftext|>"], vocab["cat</w>"], vocab["dog</w>"], vocab["<|endoftext|>"]]
    assert int(mask.sum()) == 4


def test_cli_eval_bad_data_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "madtp_deploy.cli", "eval", "--model", "clip-tiny-test",
                        "--data", str(tmp_path / "absent")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "dataset folder not found" in r.stderr and r.stderr.count("\n") == 1


def test_hf_tokenizer_from_a_local_directory(tmp_path):
    import gzip

    from madtp_deploy.data.tokenize import HFTokenizer
    with gzip.open(tmp_path / "bpe.txt.gz", "wt") as f:
        f.write("#version\nc a\nca t</w>\n")
    (tmp_path / "tok").mkdir()
    openai_bpe_tokenizer(tmp_path / "bpe.txt.gz", 8).tok.save_pretrained(tmp_path / "tok")
    tok = HFTokenizer(tmp_path / "tok", context_length=8)
    ids, mask = tok(["cat", "cat cat"])
    assert ids.shape == (2, 8) and mask.sum(1).tolist() == [3, 4]
    with pytest.raises(DataError, match="empty caption"):
        tok(["cat", " "])
    with pytest.raises(DataError, match="no usable tokenizer"):
        HFTokenizer(tmp_path / "nope", 8)
