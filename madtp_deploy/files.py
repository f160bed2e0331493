"""File helpers shared by every stage: atomic writes and JSON reads with one-line errors."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import MadtpError


@contextmanager
def atomic(path):
    """Yield a temporary path beside `path`; rename it onto `path` on success, remove it otherwise.

    The suffix is kept (`.m.png.tmp.png`) so writers that infer the format from it still work.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def read_json(path, error: type[MadtpError], missing: str, fix: str):
    """Parse a JSON file; a missing or malformed file is `error` naming the file and the fix."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}; fix: {fix}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno}); fix: {fix}") from None
