"""The catalogue: every kind of bad input to every command gives exit code 2, one stderr line naming
the option or file, the field and the fix, no traceback, and nothing left behind (no output folder
created, no temporary folder)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import assert_one_line_error, cli

TINY = "clip-tiny-test"


def _dataset(scenes_dir, tmp_path, split, fn):
    """A copy of the generated dataset whose `split` annotations were edited by fn(entries)."""
    d = tmp_path / "ds"
    shutil.copytree(scenes_dir, d)
    f = d / f"scenes_{split}.json"
    entries = json.loads(f.read_text())
    fn(entries)
    f.write_text(json.dumps(entries))
    return d


def _set(i, key, value):
    return lambda e: e[i].__setitem__(key, value)


def _file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile"


# Each case: name -> f(ctx) returning (args, needles); ctx has tmp_path, scenes_dir, bad_files, out (a path
# that must not exist afterwards).
CASES = {
    # info: bad model sources
    **{f"info-{k}": (lambda k: lambda c: (["info", c.bad[k][0]], [c.bad[k][1]]))(k) for k in (
        "temperature_nan", "temperature_neg", "temperature_inf", "spec_unknown_field", "spec_wrong_type",
        "spec_not_a_dict", "corrupt", "truncated", "safetensors_meta_list", "safetensors_meta_temperature",
        "hf_config_list", "hf_vision_config_list")},
    "info-unknown-spec": lambda c: (["info", "clip-vit-nope"], ["clip-vit-nope"]),
    "info-missing-file": lambda c: (["info", c.tmp / "nope.pt"], ["nope.pt"]),
    # export
    "export-max-batch-0": lambda c: (["export", "--model", TINY, "--output", c.out, "--max-batch", 0], ["--max-batch"]),
    "export-opset": lambda c: (["export", "--model", TINY, "--output", c.out, "--opset", 9], ["--opset 9"]),
    "export-temperature-nan": lambda c: (["export", "--model", TINY, "--output", c.out, "--temperature", "nan"],
                                         ["--temperature"]),
    "export-temperature-neg": lambda c: (["export", "--model", TINY, "--output", c.out, "--temperature", -1],
                                         ["--temperature"]),
    "export-temperature-inf": lambda c: (["export", "--model", TINY, "--output", c.out, "--temperature", "inf"],
                                         ["--temperature"]),
    "export-mode": lambda c: (["export", "--model", TINY, "--output", c.out, "--mode", "fast"], ["--mode"]),
    "export-bad-model": lambda c: (["export", "--model", c.bad["temperature_nan"][0], "--output", c.out],
                                   ["t_nan.pt", "temperature"]),
    "export-output-under-file": lambda c: (["export", "--model", TINY, "--output", _file(c.tmp) / "sub"],
                                           ["--output", "afile"]),
    "export-output-is-file": lambda c: (["export", "--model", TINY, "--output", _file(c.tmp)], ["--output", "afile"]),
    # validate
    "validate-missing": lambda c: (["validate", c.tmp / "none.onnx"], ["none.onnx"]),
    "validate-no-sidecar": lambda c: (["validate", c.onnx("lonely", sidecar=None)], ["lonely.json"]),
    "validate-sidecar-json": lambda c: (["validate", c.onnx("broken", sidecar="{oops")], ["broken.json", "JSON"]),
    "validate-other-model": lambda c: (["validate", c.onnx("swapped", sha="0" * 64)], ["swapped.onnx", "file_sha256"]),
    "validate-other-encoder": lambda c: (["validate", c.onnx("enc", inputs=["pixels"], encoder="text")],
                                         ["enc.onnx", "input_ids"]),
    "validate-unrelated-graph": lambda c: (["validate", c.onnx("unrelated", inputs=["x"])], ["unrelated.onnx", "'x'"]),
    # make-data
    "make-data-output-is-file": lambda c: (["make-data", "--output", _file(c.tmp), "--train", 1, "--val", 1, "--test", 1],
                                           ["--output", "afile"]),
    "make-data-output-under-file": lambda c: (["make-data", "--output", _file(c.tmp) / "d", "--train", 1],
                                              ["--output", "afile"]),
    "make-data-negative": lambda c: (["make-data", "--output", c.out, "--train", -5], ["--train -5"]),
    "make-data-image-size-negative": lambda c: (["make-data", "--output", c.out, "--image-size", -1], ["--image-size -1"]),
    "make-data-image-size-tiny": lambda c: (["make-data", "--output", c.out, "--image-size", 4], ["--image-size 4"]),
    # train: options
    **{f"train-{opt}-{v}": (lambda opt, v: lambda c: (
        ["train", "--data", c.scenes, "--output", c.out, "--init", TINY, f"--{opt}", v], [f"--{opt}"]))(opt, v)
       for opt, v in (("epochs", 0), ("lr", "nan"), ("lr", 0), ("lr", -1), ("batch-size", 0),
                      ("batch-size", 100000), ("reduce", 1.0), ("reduce", -0.1), ("reduce", "nan"),
                      ("wd", "inf"), ("max-steps", -1), ("control-every", -2), ("mode", "fast"))},
    "train-missing-data": lambda c: (["train", "--data", c.tmp / "nodata", "--output", c.out], ["nodata"]),
    "train-bad-init": lambda c: (["train", "--data", c.scenes, "--output", c.out, "--init", c.bad["spec_unknown_field"][0]],
                                 ["spec_unknown.pt"]),
    "train-output-under-file": lambda c: (["train", "--data", c.scenes, "--output", _file(c.tmp) / "run"], ["--output"]),
    "train-resume-truncated": lambda c: (["train", "--data", c.scenes, "--output", c.truncated_run(), "--init", TINY,
                                          "--resume"], ["last.pt"]),
    # train: annotation records (train split: one caption per entry)
    "train-image-number": lambda c: (["train", "--data", _dataset(c.scenes, c.tmp, "train", _set(3, "image", 7)),
                                      "--output", c.out, "--init", TINY], ["scenes_train.json[3]", "'image'"]),
    "train-caption-null": lambda c: (["train", "--data", _dataset(c.scenes, c.tmp, "train", _set(6, "caption", None)),
                                      "--output", c.out, "--init", TINY], ["scenes_train.json[6]", "'caption'", "None"]),
    # eval
    "eval-batch-size-0": lambda c: (["eval", "--model", TINY, "--data", c.scenes, "--batch-size", 0], ["--batch-size"]),
    "eval-batch-size-huge": lambda c: (["eval", "--model", TINY, "--data", c.scenes, "--batch-size", 100000],
                                       ["--batch-size"]),
    "eval-temperature-nan": lambda c: (["eval", "--model", TINY, "--data", c.scenes, "--temperature", "nan"],
                                       ["--temperature"]),
    "eval-mode": lambda c: (["eval", "--model", TINY, "--data", c.scenes, "--mode", "x"], ["--mode"]),
    "eval-json-under-file": lambda c: (["eval", "--model", TINY, "--data", c.scenes, "--json", _file(c.tmp) / "r.json"],
                                       ["--json", "afile"]),
    "eval-json-is-folder": lambda c: (["eval", "--model", TINY, "--data", c.scenes, "--json", c.tmp],
                                      ["--json", "a folder"]),
    "eval-caption-number": lambda c: (["eval", "--model", TINY, "--data", _dataset(
        c.scenes, c.tmp, "test", _set(4, "caption", ["a red circle", 5])), "--json", c.out / "r.json"],
        ["scenes_test.json[4]", "caption[1]", "5"]),
    "eval-image-number": lambda c: (["eval", "--model", TINY, "--data", _dataset(
        c.scenes, c.tmp, "test", _set(2, "image", 12.5))], ["scenes_test.json[2]", "'image'"]),
    "eval-caption-unknown-word": lambda c: (["eval", "--model", TINY, "--data", _dataset(
        c.scenes, c.tmp, "test", _set(5, "caption", ["a red circle", "a plaid circle"]))],
        ["scenes_test.json[5].caption[1]", "plaid"]),
    "eval-annotation-not-a-list": lambda c: (["eval", "--model", TINY, "--data", _dataset(
        c.scenes, c.tmp, "test", lambda e: e.clear())], ["scenes_test.json"]),
    # bench: everything is checked before any model is loaded or timed
    **{f"bench-{opt}-{v}": (lambda opt, v: lambda c: (
        ["bench", "--model", TINY, "--temperature", 3, f"--{opt}", v, "--json", c.out / "b.json"], [f"--{opt}"]))(opt, v)
       for opt, v in (("batch-sizes", "0"), ("batch-sizes", "8,100000"), ("batch-sizes", "a,b"), ("min-runs", 0),
                      ("warmup-s", "nan"), ("backend", "tensorflow"), ("mode", "fast"), ("temperature", -1))},
    "bench-json-under-file": lambda c: (["bench", "--model", TINY, "--json", _file(c.tmp) / "b.json"], ["--json", "afile"]),
    "bench-plot-under-file": lambda c: (["bench", "--model", TINY, "--plot", _file(c.tmp) / "p.png"], ["--plot", "afile"]),
    "bench-markdown-is-folder": lambda c: (["bench", "--model", TINY, "--markdown", c.tmp], ["--markdown"]),
    "bench-plot-format": lambda c: (["bench", "--model", TINY, "--plot", c.out / "p.xyz"], ["--plot", ".xyz"]),
    "bench-onnx-missing": lambda c: (["bench", "--onnx", c.tmp / "none.onnx"], ["none.onnx"]),
}


class Ctx:
    def __init__(self, tmp_path, scenes_dir, bad_files):
        self.tmp, self.scenes, self.bad = tmp_path, scenes_dir, bad_files
        self.out = tmp_path / "out" / "deeper"

    def onnx(self, stem, sidecar="ok", sha=None, inputs=("input_ids", "attention_mask"), encoder="text"):
        """A small real ONNX graph with `inputs` and a sidecar (None: none, a string: that text)."""
        import onnx
        from onnx import TensorProto, helper

        from madtp_deploy.files import file_sha256

        nodes = [helper.make_node("Identity", [inputs[0]], ["embeds"])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.INT64, [1, 4]) for n in inputs],
                                  [helper.make_tensor_value_info("embeds", TensorProto.INT64, [1, 4])])
        path = self.tmp / f"{stem}.onnx"
        onnx.save(helper.make_model(graph), str(path))
        if sidecar == "ok":
            sidecar = json.dumps({"model": {"source": TINY, "mode": "invariant", "temperature": 3.0},
                                  "encoder": encoder, "file_sha256": sha or file_sha256(path)})
        if sidecar is not None:
            path.with_suffix(".json").write_text(sidecar)
        return path

    def truncated_run(self):
        run = self.tmp / "run"
        run.mkdir()
        (run / "last.pt").write_bytes(b"PK\x03\x04 cut short by a kill")
        return run


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_nothing_left(case, tmp_path, scenes_dir, bad_files, private_tmp):
    c = Ctx(tmp_path, scenes_dir, bad_files)
    args, needles = CASES[case](c)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = cli(*args)
    assert_one_line_error(r, *needles)
    assert not (tmp_path / "out").exists(), "a failed command left its output folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a failed command left files beside its inputs"
    assert not list(private_tmp.iterdir()), "a failed command left a temporary folder"
    if (tmp_path / "run").is_dir():  # the truncated resume: no new files in the run folder
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt"]


@pytest.mark.parametrize("args", [
    ["train", "--data", "{tmp}", "--output", "{tmp}/run", "--epochs", "0"],
    ["eval", "--data", "{tmp}", "--json", "{tmp}/afile/r.json"],
])
def test_real_process_exit_2_no_traceback(args, tmp_path):
    """The console entry point itself (not only the in-process runner): exit 2, one line, no traceback."""
    (tmp_path / "afile").write_text("x")
    r = subprocess.run([sys.executable, "-m", "madtp_deploy.cli"] + [a.format(tmp=tmp_path) for a in args],
                       capture_output=True, text=True, timeout=120, env=os.environ | {"COLUMNS": "200"})
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr and "fix:" in r.stderr
    assert not (tmp_path / "run").exists()
