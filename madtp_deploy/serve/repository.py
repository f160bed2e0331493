"""`madtp-deploy serve-repo`: a Triton Inference Server model repository from a model and its exports.

For each graph the family serves (serve/table.py) and each variant (packed by default; dense and
padded invariant for the load test) it writes:

    <graph>[_<variant>]/            python backend (loaded here): IMAGE / TEXT bytes in, EMBEDS, KEPT,
        config.pbtxt                GFLOPS out; dynamic batching, instance group, warm-up
        1/model.py, 1/serve.json    the adapter (template.py) and what it opens
        1/tokenizer/                the model's own tokenizer files (text graphs)
        warmup/<INPUT>              the warm-up request's data
    <graph>[_<variant>]_onnx/       GPU variant (not loaded here): the same ONNX graph, Triton's
        config.pbtxt, 1/model.onnx  onnxruntime backend (CUDA / TensorRT execution providers)
    <graph>_trt/                    GPU variant (not loaded here): tensorrt_plan, from a static export
        config.pbtxt[, 1/model.plan]  + `madtp-deploy build` (--plan), else the config and how to build
    repository.json                 what is where, and which models the CPU server loads

The python model reads the graph file of its `_onnx` sibling (one copy of the weights).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from pathlib import Path

from ..errors import UsageError
from .table import Served, served_graphs, tokenizer_kind

VARIANTS = ("packed", "invariant", "dense")
TRITON_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "bytes": "TYPE_STRING"}
TEMPLATE = Path(__file__).with_name("template.py")


def model_name(encoder: str, variant: str = "packed", kind: str = "") -> str:
    """`image`, `image_dense`, `image_invariant`; `image_onnx`, `image_trt` for the GPU variants."""
    return "_".join([encoder] + ([variant] if variant != "packed" else []) + ([kind] if kind else []))


def parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names or len(set(names)) != len(names):
        raise UsageError(f"--variants {text!r}: need distinct names of {', '.join(VARIANTS)}; fix: e.g. packed "
                         f"or dense,invariant,packed")
    return names


# -- config.pbtxt (protobuf text format of Triton's ModelConfig) ----------------------------------------

def _dims(axes) -> str:
    return "[ " + ", ".join(str(a if isinstance(a, int) else -1) for a in axes) + " ]"


def _tensor(name: str, dtype: str, dims: str) -> str:
    return f'  {{ name: "{name}" data_type: {TRITON_TYPES[dtype]} dims: {dims} }}'


def _io_block(inputs: list[str], outputs: list[str]) -> str:
    sep = ",\n"
    return f"input [\n{sep.join(inputs)}\n]\noutput [\n{sep.join(outputs)}\n]\n"


def _batching(max_batch: int, preferred: list[int], queue_delay_us: int) -> str:
    pref = [b for b in preferred if b <= max_batch]
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {', '.join(map(str, pref))} ]\n"
            f"  max_queue_delay_microseconds: {queue_delay_us}\n}}\n")


def python_config(name: str, io, s: Served, max_batch: int, instances: int, preferred: list[int],
                  queue_delay_us: int) -> str:
    graph_out = {t.name: t for t in io.outputs}
    inputs = [_tensor(n, "bytes", "[ 1 ]") for n in s.inputs]
    outputs = [_tensor(n, graph_out[g].dtype, _dims(graph_out[g].axes[1:])) for n, g in s.outputs.items()]
    outputs.append(_tensor("GFLOPS", "float32", "[ 1 ]"))
    warm = "\n".join(f'      inputs {{ key: "{n}" value {{ data_type: TYPE_STRING dims: [ 1 ] '
                     f'input_data_file: "{n}" }} }}' for n in s.inputs)
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
            + _io_block(inputs, outputs)
            + _batching(max_batch, preferred, queue_delay_us)
            + f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
            f'model_warmup [\n  {{\n    name: "one request"\n    batch_size: 1\n{warm}\n  }}\n]\n')


def graph_config(name: str, platform: str, io, max_batch: int, preferred: list[int], queue_delay_us: int) -> str:
    """The raw graph for a GPU server: the graph's own tensors (pixels, input_ids, ...), no preprocessing."""
    inputs = [_tensor(t.name, t.dtype, _dims(t.axes[1:])) for t in io.inputs]
    outputs = [_tensor(t.name, t.dtype, _dims(t.axes[1:])) for t in io.outputs]
    head = 'backend: "onnxruntime"' if platform == "onnxruntime" else 'platform: "tensorrt_plan"'
    text = (f'name: "{name}"\n{head}\nmax_batch_size: {max_batch}\n'
            + _io_block(inputs, outputs)
            + _batching(max_batch, preferred, queue_delay_us)
            + "instance_group [ { count: 1 kind: KIND_GPU } ]\n")
    if platform == "onnxruntime":
        text += ("# CUDA execution provider by default; TensorRT's (engines built per shape at first use):\n"
                 "# optimization { execution_accelerators { gpu_execution_accelerator: [ { name: \"tensorrt\" "
                 "parameters { key: \"precision_mode\" value: \"FP16\" } } ] } }\n")
    return text


# -- warm-up data and tokenizer files ---------------------------------------------------------------

def _serialized(items: list[bytes]) -> bytes:
    """Triton's raw layout of a BYTES tensor: each element as a 4-byte little-endian length + bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def warmup_image(size: int) -> bytes:
    import io

    from ..data.scenes import Shape, render

    img = render([Shape("circle", "red", "large", 0.3, 0.4), Shape("square", "blue", "small", 0.7, 0.7)],
                 random.Random(0), size)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


WARMUP_TEXT = "a large red circle left of a small blue square"  # words of the shipped model's vocabulary


def tokenizer_files(spec, kind: str, tokenizer: Path | None, dest: Path) -> dict:
    """Copy the model's own tokenizer into `dest` -> serve.json's {"kind", "path"} (relative to 1/)."""
    from ..errors import DataError

    dest.mkdir(parents=True, exist_ok=True)
    if kind == "clip":
        if tokenizer is None:  # the vocabulary the shipped model (and the *-tiny specs) were trained on
            from ..data.scenes import WORDS

            (dest / "vocab.json").write_text(json.dumps({"words": WORDS}))
            return {"kind": "words", "path": "tokenizer"}
        if tokenizer.is_dir():
            shutil.copytree(tokenizer, dest / "hf")
            return {"kind": "hf", "path": "tokenizer/hf"}
        if tokenizer.name.endswith(".gz") and tokenizer.is_file():
            shutil.copy2(tokenizer, dest / tokenizer.name)
            return {"kind": "bpe", "path": f"tokenizer/{tokenizer.name}"}
        raise DataError(f"--tokenizer {tokenizer}: not a tokenizer folder or BPE .txt.gz file; fix: pass a Hugging "
                        f"Face tokenizer folder or OpenAI's bpe_simple_vocab_16e6.txt.gz")
    if tokenizer is None:  # WordPiece of the generated task (the blip-*-tiny specs)
        from ..data.scenes import BERT_WORDS, bert_vocab

        (dest / "vocab.txt").write_text(bert_vocab(BERT_WORDS, spec.vocab_size))
    elif (tokenizer / "vocab.txt").is_file():
        shutil.copy2(tokenizer / "vocab.txt", dest / "vocab.txt")
    else:
        raise DataError(f"--tokenizer {tokenizer}: no vocab.txt; fix: pass a folder with bert-base-uncased's "
                        f"vocab.txt")
    return {"kind": kind, "path": "tokenizer"}


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# -- the writer -------------------------------------------------------------------------------------

def _variant_model(source, variant: str, temperature):
    from ..api import load

    if variant == "dense":  # the same weights without pruning, as `bench` measures dense
        return load(source, mode="invariant", temperature=0.0)
    return load(source, mode=variant, temperature=temperature)


def write_repository(source, output: Path, *, variants=("packed",), temperature: float | None = None,
                     tokenizer: Path | None = None, plans: dict | None = None, max_batch: int = 64,
                     instances: int = 1, preferred: tuple[int, ...] = (4, 8, 16, 32), queue_delay_us: int = 2000,
                     threads: int | None = None, cache: Path | None = None, encoders=None, log=print) -> dict:
    """Write the repository into `output` (replaced as a whole, atomically); returns its manifest.
    `encoders` limits it to some of the family's graphs (the load test serves only the image graph)."""
    import tempfile

    from .. import families
    from ..files import check_output_dir
    from ..onnx.export import cached_export, export_model
    from ..onnx.io import encoder_io

    output = Path(output)
    check_output_dir(output.parent if output.parent != Path("") else Path("."), "--output")
    if output.exists() and not (output / "repository.json").is_file():
        raise UsageError(f"--output {output}: exists and is not a repository serve-repo wrote (no repository.json);"
                         f" fix: pass a new folder")
    if "packed" not in variants:
        raise UsageError("--variants: packed is what the server serves; fix: include packed")
    models, first = {}, None
    for v in variants:
        models[v] = _variant_model(source, v, temperature)
        first = first or models[v]
    assert first is not None  # at least one variant (parsed above)
    fam = families.of(first)
    fam.require("serve", f"--model {source}")
    kind = tokenizer_kind(fam.name)
    plans = {k: Path(p) for k, p in (plans or {}).items()}
    for enc, p in plans.items():
        if enc not in fam.encoders or not p.is_file():
            raise UsageError(f"--plan {enc}={p}: {'no such file' if enc in fam.encoders else 'unknown graph'}; fix: "
                             f"pass ENCODER=FILE with the .plan `madtp-deploy build` wrote ({', '.join(fam.encoders)})")
        if not fam.supports("static"):
            raise UsageError(f"--plan: {fam.title} models have no static graphs for TensorRT; fix: drop --plan")
    if models["packed"].temperature <= 0 and len(variants) > 1:
        raise UsageError(f"--model {source}: temperature 0 (a dense model): the variants would all be dense; "
                         f"fix: pass --temperature T or a MADTP checkpoint")
    spec = first.spec
    graphs = [s for s in served_graphs(fam.name) if encoders is None or s.encoder in encoders]
    exported = tuple(s.encoder for s in graphs)
    if max_batch != 64:
        cache = None  # cached graphs were exported with export's default max batch (64)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    manifest = {"source": str(source), "family": fam.name, "spec": spec.name,
                "temperature": models["packed"].temperature, "max_batch": max_batch, "load": [], "gpu_only": {},
                "models": {}}
    try:
        for v, m in models.items():
            if cache is not None:
                paths = cached_export(m, Path(cache), f"serve-{spec.name}-{v}", exported, source=str(source),
                                      log=log)
            else:
                log(f"exporting {v} ({', '.join(exported)}) of {source}")
                written = export_model(m, staging / ".export", f"{spec.name}-{v}", source=str(source),
                                       max_batch=max_batch, validate=False, log=lambda *_: None, encoders=exported)
                paths = {p.name.split(".")[-2]: p for p in written if p.suffix == ".onnx"}
            for s in graphs:
                io = encoder_io(spec, s.encoder, static=False)
                name, onnx_name = model_name(s.encoder, v), model_name(s.encoder, v, "onnx")
                graph = staging / onnx_name / "1" / "model.onnx"
                _link_or_copy(paths[s.encoder], graph)
                _link_or_copy(paths[s.encoder].with_suffix(".json"), graph.with_suffix(".json"))
                (staging / onnx_name / "config.pbtxt").write_text(
                    graph_config(onnx_name, "onnxruntime", io, max_batch, list(preferred), queue_delay_us))
                version = staging / name / "1"
                version.mkdir(parents=True)
                shutil.copy2(TEMPLATE, version / "model.py")
                cfg = {"family": fam.name, "encoder": s.encoder, "variant": v, "onnx": f"{onnx_name}/1/model.onnx",
                       "threads": threads}
                warm = staging / name / "warmup"
                warm.mkdir()
                for n, (k, _) in s.inputs.items():
                    item = warmup_image(spec.image_size) if k == "image" else WARMUP_TEXT.encode()
                    (warm / n).write_bytes(_serialized([item]))
                    if k == "text" and "tokenizer" not in cfg:
                        cfg["tokenizer"] = tokenizer_files(spec, kind, Path(tokenizer) if tokenizer else None,
                                                            version / "tokenizer")
                (version / "serve.json").write_text(json.dumps(cfg, indent=2))
                (staging / name / "config.pbtxt").write_text(
                    python_config(name, io, s, max_batch, instances, list(preferred), queue_delay_us))
                manifest["load"].append(name)
                manifest["models"][name] = {"variant": v, "encoder": s.encoder, "backend": "python",
                                            "inputs": list(s.inputs), "outputs": [*s.outputs, "GFLOPS"]}
                manifest["gpu_only"][onnx_name] = "onnxruntime backend (CUDA / TensorRT execution providers)"
        _write_trt(staging, fam, spec, graphs, plans, max_batch, list(preferred), queue_delay_us, manifest)
        shutil.rmtree(staging / ".export", ignore_errors=True)
        (staging / "repository.json").write_text(json.dumps(manifest, indent=2))
        old = output.with_name(f".{output.name}.old")
        if output.exists():
            os.replace(output, old)
        os.replace(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_trt(staging: Path, fam, spec, graphs, plans: dict, max_batch: int, preferred, delay: int,
               manifest: dict) -> None:
    """tensorrt_plan configs from the static (fixed-capacity) contract, for the families that have one."""
    from ..onnx.io import encoder_io

    if not fam.supports("static"):
        return
    for s in graphs:
        name = model_name(s.encoder, "packed", "trt")
        io = encoder_io(spec, s.encoder, static=True)
        (staging / name / "1").mkdir(parents=True)
        (staging / name / "config.pbtxt").write_text(graph_config(name, "tensorrt_plan", io, max_batch, preferred,
                                                                  delay))
        if s.encoder in plans:
            shutil.copy2(plans[s.encoder], staging / name / "1" / "model.plan")
            how = f"model.plan from {plans[s.encoder]}"
        else:
            how = (f"no 1/model.plan: on the GPU machine run `madtp-deploy export --model {manifest['source']} "
                   f"--shapes static` and `madtp-deploy build <name>.{s.encoder}.onnx`, copy the .plan here")
        manifest["gpu_only"][name] = f"tensorrt_plan ({how})"
