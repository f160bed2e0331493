"""The registry of model families: each family says, once, what it is made of and what it supports.

A family (CLIP, BLIP retrieval, BLIP NLVR2) declares its spec type, how to build a model from a
spec, the graphs it exports (IO contracts), its FLOPs functions, its training hooks and evaluator,
its bench runner and the features it supports. The CLI, export, validation, the runtimes, the
bench, calibration, training and serving ask this registry; nothing outside it tells families
apart. Like timm's `register_model` or optimum's `TasksManager`.

Heavy parts are named as "module:attribute" and imported on first use, so the registry sits low in
the house (beside specs) and importing it costs nothing. Adding a family is one module that calls
`register(Family(...))`, imported at the bottom of this file (or by the code that adds it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UsageError

# What a family may support, beyond export of its dynamic-shape ONNX graphs (which all do):
# feature -> (what it is, the fix a user of a family without it is given)
FEATURES = {
    "static": ("fixed-capacity (static-shape) graphs", "export with --shapes dynamic (the default)"),
    "aoti": ("AOTInductor packages", "export with --format onnx (the default)"),
    "calibrate": ("INT8 / FP8 calibration", "serve its fp32 graphs"),
    "serve": ("Triton serving", "export it and run the graphs with madtp_deploy.runtime"),
    "train": ("compression training", "train a model of a family that has it"),
    "eval": ("evaluation", "evaluate a model of a family that has it"),
    "bench": ("benchmarks", "bench a model of a family that has it"),
    "peers": ("the peers (ToMe, top-k, low resolution)", "evaluate it with --method madtp"),
    "gallery": ("recalls within galleries (`eval --gallery`)", "drop --gallery"),
}


def resolve(ref: str | Callable | None) -> Any:
    """'package.module:attr' -> the object (imported now); objects pass through."""
    if ref is None or not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Family:
    name: str                         # "clip", "blip-retrieval", "blip-nlvr"
    title: str                        # what a user reads: "CLIP", "BLIP retrieval", "BLIP NLVR2"
    spec_type: type
    matches: Callable[[Any], bool]    # spec -> is it this family's (spec_type alone may be shared)
    build: str                        # (spec, mode, temperature) -> model, seeded init
    contracts: dict[str, str]         # encoder -> "module:factory" of its IO contract: (spec, static) -> EncoderIO
    graph_code: tuple[str, ...]       # package files that define its exported graphs (the export cache key)
    describe: str                     # model -> [(field, value)] rows for `info`
    image_gflops: str | None = None   # (spec, kept, pruning) -> Tensor[B]: the image encoder's GFLOPs
    packed_image_gflops: str | None = None  # (spec, kept) -> Tensor[B]: what a packed batch computes
    data_kind: str = "retrieval"      # the dataset format it trains and evaluates on: "retrieval" or "nlvr"
    default_init: str = ""            # `train --init` when none is given for this family's data
    training: str | None = None       # "module:HOOKS" of the one training loop (madtp_deploy.train)
    evaluator: str | None = None      # "module:function" (model, split, tokenizer, batch_size, **kw) -> dict
    eval_report: str | None = None    # "module:function" (result) -> (columns, rows, notes) for the CLI
    bench: str | None = None          # "module:function" of the bench runner
    bench_variants: tuple[str, ...] = ("dense", "reference", "invariant", "packed")
    serving: str | None = None        # "module:ENTRY": what a served request carries (madtp_deploy/serve/table.py)
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def encoders(self) -> tuple[str, ...]:
        return tuple(self.contracts)

    def supports(self, feature: str) -> bool:
        return feature in self.features

    def require(self, feature: str, where: str) -> None:
        """Refuse, in one line, a feature this family lacks (the registry's table says which it has)."""
        if feature not in FEATURES:
            raise KeyError(feature)  # a programming error, not the user's
        if feature not in self.features:
            what, fix = FEATURES[feature]
            others = ", ".join(f.name for f in having_feature(feature))
            raise UsageError(f"{where}: {what} are not built for {self.title} models; fix: {fix}"
                             + (f", or use a model of family {others}" if others else ""))

    def hook(self, name: str) -> Any:
        """A lazily named part, resolved: hook('bench'), hook('training'), ..."""
        ref = getattr(self, name)
        if ref is None:
            raise UsageError(f"{self.title}: no {name} is registered for this family; fix: see "
                             f"`madtp-deploy families`")
        return resolve(ref)

    def contract(self, spec, encoder: str, static: bool = False):
        if encoder not in self.contracts:
            raise UsageError(f"encoder {encoder!r}: {spec.name} ({self.title}) has {', '.join(self.encoders)}; "
                             f"fix: use {' or '.join(self.encoders)}")
        if static:
            self.require("static", f"{spec.name}")
        return resolve(self.contracts[encoder])(spec, static)


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    unknown = set(family.features) - set(FEATURES)
    if unknown:
        raise ValueError(f"family {family.name}: unknown feature(s) {sorted(unknown)}")
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    _FAMILIES.pop(name, None)


def names() -> list[str]:
    return list(_FAMILIES)


def get(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError as exc:
        raise UsageError(f"family {name!r}: unknown; fix: use one of {', '.join(_FAMILIES)}") from exc


def of(spec_or_model) -> Family:
    """The family of a spec, or of a model (its `.spec`)."""
    spec = getattr(spec_or_model, "spec", spec_or_model)
    for fam in _FAMILIES.values():
        if isinstance(spec, fam.spec_type) and fam.matches(spec):
            return fam
    raise UsageError(f"spec {getattr(spec, 'name', spec)!r}: no registered family takes a "
                     f"{type(spec).__name__}; fix: register one in madtp_deploy/families/")


def spec_from_record(record: dict):
    """The spec an artifact's sidecar records: by its `family` field (every export writes it), else
    (older sidecars) by the spec's own fields."""
    from ..specs import spec_from_dict

    name = record.get("family")
    spec = record["model"]["spec"]
    return get(name).spec_type.from_dict(spec) if name else spec_from_dict(spec)  # type: ignore[attr-defined]


def having_feature(feature: str) -> list[Family]:
    return [f for f in _FAMILIES.values() if feature in f.features]


def for_data(kind: str) -> list[Family]:
    return [f for f in _FAMILIES.values() if f.data_kind == kind]


def table() -> list[dict]:
    """One row per family: what `madtp-deploy families` prints."""
    return [{"family": f.name, "title": f.title, "encoders": list(f.encoders), "data": f.data_kind,
             "features": sorted(f.features)} for f in _FAMILIES.values()]


from . import blip, clip  # noqa: E402,F401 - the built-in families register themselves
