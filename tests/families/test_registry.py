"""The family registry (madtp_deploy/families): one table that every command asks."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import madtp_deploy
from madtp_deploy import families
from madtp_deploy.errors import UsageError
from madtp_deploy.onnx.export import export_model
from madtp_deploy.onnx.io import EncoderIO, TensorSpec, encoder_io
from madtp_deploy.runtime import open_session

PACKAGE = Path(madtp_deploy.__file__).parent


# -- a fourth family, declared in this test module alone ---------------------------------------------

@dataclasses.dataclass(frozen=True)
class ToySpec:
    name: str = "toy"
    image_size: int = 8
    layers: int = 2
    embed_dim: int = 4

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


@dataclasses.dataclass
class ToyOut:
    embeds: torch.Tensor
    kept: torch.Tensor


class ToyModel(nn.Module):
    """Keeps, per layer, the pixels above a threshold: keep counts that differ per image."""

    def __init__(self, spec, mode="packed", temperature=1.0):
        super().__init__()
        self.spec, self.mode, self.temperature = spec, mode, temperature
        self.proj = nn.Linear(3, spec.embed_dim)

    def encode_image(self, pixels):
        flat = pixels.flatten(2).transpose(1, 2)              # [B, HW, 3]
        kept = torch.stack([(flat.mean(-1) > t).sum(-1) for t in (0.0, 0.5)], 1).long()
        return ToyOut(self.proj(flat.mean(1)), kept)


def toy_contract(spec, static=False):
    s = spec.image_size

    def examples(spec, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(n, 3, s, s, generator=g) * torch.linspace(0.1, 2, n)[:, None, None, None],)

    return EncoderIO("image", (TensorSpec("pixels", "float32", ("batch", 3, s, s)),),
                     (TensorSpec("embeds", "float32", ("batch", spec.embed_dim)),
                      TensorSpec("kept", "int64", ("batch", spec.layers))),
                     encode=lambda m, px: m.encode_image(px), examples=examples, unit="images")


@pytest.fixture
def toy_family():
    fam = families.register(families.Family(
        name="toy", title="Toy", spec_type=ToySpec, matches=lambda s: True, build=ToyModel,
        contracts={"image": toy_contract}, graph_code=(), describe=lambda m: [("name", m.spec.name)],
        features=frozenset({"bench"})))
    yield fam
    families.unregister("toy")


def test_a_fourth_family_exports_validates_and_serves_through_the_registry_alone(toy_family, tmp_path):
    """Bug caught: a family switch left outside the registry (export, validation, the IO contract or the
    session would refuse or mis-handle a family they were not written for)."""
    model = ToyModel(ToySpec()).eval()
    assert families.of(model) is toy_family and families.of(model).encoders == ("image",)
    paths = export_model(model, tmp_path, "toy", source="toy", log=lambda *_: None, fold=False)
    onnx = tmp_path / "toy.image.onnx"
    assert onnx in paths
    x = toy_contract(ToySpec()).example(ToySpec(), 5, seed=3)
    out = open_session(onnx, backend="ort").run({k: v.numpy() for k, v in x.items()})
    want = model.encode_image(x["pixels"])
    np.testing.assert_array_equal(out["kept"], want.kept.numpy())
    assert len(set(map(tuple, out["kept"].tolist()))) > 1  # the instances prune differently


def test_a_feature_a_family_lacks_is_refused_in_one_line(toy_family):
    """Bug caught: a missing feature reached code written for another family (a traceback, or a silently
    wrong artifact) instead of the registry's one-line refusal."""
    with pytest.raises(UsageError, match=r"toy: fixed-capacity .* not built for Toy models; fix: export with --shapes dynamic.*family clip"):
        encoder_io(ToySpec(), "image", static=True)
    with pytest.raises(UsageError, match=r"encoder 'text': toy \(Toy\) has image"):
        encoder_io(ToySpec(), "text")


def test_every_registered_spec_has_exactly_one_family():
    from madtp_deploy.specs import get_spec, spec_names

    got = {n: families.of(get_spec(n)).name for n in spec_names()}
    assert got["clip-vit-b16"] == "clip" and got["blip-nlvr"] == "blip-nlvr"
    assert got["blip-retrieval-tiny"] == "blip-retrieval"
    for n in spec_names():
        spec = get_spec(n)
        assert sum(isinstance(spec, f.spec_type) and f.matches(spec) for f in map(families.get, families.names())) == 1


def test_every_named_part_of_every_family_resolves():
    """Bug caught: a registry entry naming a function that moved or was renamed (found only when a user
    runs that command)."""
    for name in families.names():
        fam = families.get(name)
        for part in ("build", "describe", "image_gflops", "packed_image_gflops", "training", "evaluator",
                     "eval_report", "bench", "serving"):
            ref = getattr(fam, part)
            if ref is not None:
                assert callable(families.resolve(ref)) or families.resolve(ref) is not None, (name, part)
        for encoder in fam.encoders:
            assert callable(families.resolve(fam.contracts[encoder]))
        for f in fam.graph_code:
            assert (PACKAGE / f).is_file(), (name, f)


def _package_imports(rel: str) -> set[str]:
    """Package files that `rel` imports (relative imports, top level and inside functions)."""
    path = PACKAGE / rel
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            target = base.joinpath(*(node.module or "").split(".")) if node.module else base
            for cand in (target.with_suffix(".py"), target / "__init__.py"):
                if cand.is_file():
                    out.add(str(cand.relative_to(PACKAGE)))
    return out


def test_the_export_cache_key_covers_the_code_the_graph_runs():
    """Bug caught: the export cache key omitted modes.py (and models/clip.py for BLIP graphs), so an
    edit there reused a stale graph. Every models/, pruning/ and modes.py file the family's model code
    imports must be in its graph_code."""
    for name in families.names():
        fam = families.get(name)
        module = fam.build.split(":")[0].removeprefix("madtp_deploy.").replace(".", "/") + ".py"
        seen, todo = set(), [module]
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            todo += [g for g in _package_imports(f) if g.startswith(("models/", "pruning/")) or g == "modes.py"]
        need = {f for f in seen if not f.endswith("__init__.py") and "checkpoint" not in f and "hf.py" not in f}
        assert need <= set(fam.graph_code), (name, sorted(need - set(fam.graph_code)))


def test_no_family_switch_outside_the_registry():
    """Bug caught: `hasattr(model, 'nlvr')` / `isinstance(spec, BlipSpec)` switches spread through the
    commands (16 of them before the registry); a new family or feature would need each one edited."""
    allowed = ("families/", "specs.py", "models/", "train/", "flops_blip.py", "peers/")
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith(allowed):
            continue
        text = path.read_text()
        for needle in ("isinstance(spec, BlipSpec)", "isinstance(spec, ClipSpec)", 'hasattr(m, "nlvr")',
                       'hasattr(m, "match")', 'hasattr(m, "text_encoder")', 'hasattr(pruned, "nlvr")',
                       'hasattr(models["dense"]'):
            if needle in text:
                bad.append(f"{rel}: {needle}")
    assert not bad, bad
