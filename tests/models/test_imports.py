"""madtp_deploy.models imports downwards only: no module of the package reaches itself again through its
own imports (function-level ones included), as checkpoint.py <-> blip_checkpoint.py once did."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import madtp_deploy.models

PKG = Path(madtp_deploy.models.__file__).parent


def _imports(path: Path) -> set[str]:
    """The sibling modules a models/ file imports (`from . import x`, `from .x import y`, anywhere)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return out & {p.stem for p in PKG.glob("*.py")}


def test_models_modules_form_no_import_circle():
    """Bug caught: a loader importing a module that imports it back (checkpoint <-> blip_checkpoint)."""
    graph = {p.stem: _imports(p) for p in PKG.glob("*.py") if p.stem != "__init__"}
    assert graph["checkpoint"] >= {"blip_checkpoint", "state"}  # the scan sees the imports it must
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import circle in madtp_deploy/models: {' -> '.join(exc.args[1])}") from None
