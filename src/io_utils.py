"""Atomic file writes and validated JSON-lines reading.

Every output is written to a temporary file in the same folder and renamed into place, so an
interrupted stage never leaves a truncated file that the next stage would read as complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


class InputError(Exception):
    """Bad input data: the message names the file, the line and the field."""


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should read like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: Any) -> None:
    """Pretty, key-sorted JSON (stable bytes for git and DVC metrics)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: Path | str, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_json(path: Path | str) -> Any:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def read_jsonl(
    path: Path | str, validate: Callable[[dict, str], None] | None = None
) -> list[dict]:
    """Read every line; ``validate(row, where)`` raises InputError naming the field.

    An empty file is an error: a stage never silently runs on nothing.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
            if validate is not None:
                validate(row, where)
            rows.append(row)
    if not rows:
        raise InputError(f"{path}: empty file, nothing to process")
    return rows


def require(row: dict, field: str, types: type | tuple[type, ...], where: str) -> Any:
    """Return ``row[field]`` or raise InputError naming the missing/mistyped field."""
    if field not in row:
        raise InputError(f"{where}: missing field '{field}'")
    value = row[field]
    if types is float:
        types = (int, float)
    if not isinstance(value, types) or (isinstance(value, bool) and types in ((int, float), int)):
        want = getattr(types, "__name__", None) or "/".join(t.__name__ for t in types)
        raise InputError(f"{where}: field '{field}' should be {want}, got {type(value).__name__}")
    return value
