"""File helpers shared by every stage: atomic writes and JSON reads with one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import MadtpError, OutputError


@contextmanager
def atomic(path):
    """Yield a temporary path beside `path`; rename it onto `path` on success, remove it otherwise.

    The suffix is kept (`.m.png.tmp.png`) so writers that infer the format from it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temp_name(path) -> Path:
    """The name `atomic` writes under before the rename (hidden, beside the final file)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{path.suffix}")


def remove_stale_temps(folder, names) -> list[Path]:
    """Remove the temporary files a killed run left beside `names` in `folder` (see `atomic`)."""
    gone = []
    for name in names:
        tmp = temp_name(Path(folder) / name)
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    return gone


def _missing_parents(path: Path) -> list[Path]:
    """The folders at and above `path` that do not exist yet, deepest first."""
    out = []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def _probe(folder: Path, what: str, fix: str) -> None:
    """Create `folder` (and parents) if needed, write and remove a probe file, undo what was created."""
    created = _missing_parents(folder)
    above = created[-1].parent if created else folder
    if not above.is_dir():
        raise OutputError(f"{what}: not writable ({above} is a file, not a folder); fix: {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what}: not writable ({exc.strerror or type(exc).__name__}); fix: {fix}") from exc
    finally:
        for d in created:  # deepest first; only folders this probe made, and only while empty
            try:
                d.rmdir()
            except OSError:
                break


def check_output_file(path, option: str) -> Path:
    """Fail now, before any work, if `path` cannot be written (a folder, or under a regular file).

    Nothing is left behind: folders created to probe are removed again; the writer creates them.
    """
    path = Path(path)
    fix = f"pass {option} with a file path in a folder you can write to"
    if path.is_dir():
        raise OutputError(f"{option} {path}: not writable (a folder, expected a file path); fix: {fix}")
    _probe(path.parent, f"{option} {path}", fix)
    return path


def check_output_dir(path, option: str) -> Path:
    """Fail now if `path` cannot be a writable folder; nothing is created (see check_output_file)."""
    path = Path(path)
    fix = f"pass {option} with a folder you can write to"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: not writable (a file, expected a folder); fix: {fix}")
    _probe(path, f"{option} {path}", fix)
    return path


@contextmanager
def output_dir(path, option: str):
    """Check `path` now; if the work inside fails, remove the folder again when this call created it
    and it is still empty (a failed command leaves no empty output folder behind)."""
    path = check_output_dir(path, option)
    created = _missing_parents(path)
    try:
        yield path
    except BaseException:
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        raise


@contextmanager
def temp_dir(prefix: str):
    """A temporary folder removed on every exit path: success, error, KeyboardInterrupt."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def clean_stale_staging(folder, prefix: str = ".export-", older_than_s: float = 3600.0) -> list[Path]:
    """Remove staging folders `folder/<prefix>*` untouched for `older_than_s` seconds: what a killed
    run left behind (a live run's staging is younger: its files keep the folder's mtime fresh)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, gone = time.time(), []
    for d in folder.glob(f"{prefix}*"):
        try:
            stale = d.is_dir() and not d.is_symlink() and now - d.stat().st_mtime >= older_than_s
        except OSError:
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def write_text_atomic(path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def write_section(path, marker: str, body: str) -> None:
    """Replace what lies between `<!-- marker:begin -->` and `<!-- marker:end -->` in a markdown file with
    `body` (generated tables in docs/), or append the marked section when the file has no such markers."""
    path = Path(path)
    start, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = path.read_text()
    if start in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
    else:
        head, tail = text.rstrip("\n") + "\n\n", "\n"
    write_text_atomic(path, head + start + "\n" + body.rstrip("\n") + "\n" + end + tail)


def read_json(path, error: type[MadtpError], missing: str, fix: str):
    """Parse a JSON file; a missing or malformed file is `error` naming the file and the fix."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise error(f"{path}: {missing}; fix: {fix}") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno}); fix: {fix}") from exc


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes (artifacts record it in their sidecars)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(model) -> str:
    """SHA-256 of a model's state dict (names and bytes): what every artifact of it records."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
