"""Atomic file writes and validated JSON-lines reading.

Every output is written to a temporary file in the same folder and renamed into place, so an
interrupted stage never leaves a truncated file that the next stage would read as complete.
The temporary name is ``.<name>.<8 random characters>.tmp``; a write removes the leftovers of
earlier interrupted writes of the same output before it starts. A write that fails for lack of
permission or space raises an ``OSError`` naming the output (not the temporary file).

Two process guards live here too, since every stage imports this module: :func:`run_lock`
keeps a second run of a training stage off the outputs the first is writing, and
:func:`die_with_parent` ends a stage when the process that started it (``dvc``, the launcher)
dies, instead of training on beside a rerun.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator


class InputError(Exception):
    """Bad input data: the message names the file, the line and the field."""


def _is_leftover(name: str, output: str) -> bool:
    """Whether ``name`` is the temporary file of an atomic write of ``output``."""
    return re.fullmatch(rf"\.{re.escape(output)}\.[A-Za-z0-9_]{{8}}\.tmp", name) is not None


def remove_leftovers(path: Path | str) -> list[Path]:
    """Delete the temporary files or folders that interrupted atomic writes of ``path`` left
    beside it; return what was removed."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for old in path.parent.iterdir():
            if _is_leftover(old.name, path.name):
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
                removed.append(old)
    return removed


# How libraries written in Rust report an OS error: tokenizers "... (os error 28)",
# safetensors "IoError(Os { code: 28, kind: StorageFull, ... })".
OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")


@contextmanager
def _naming_output(path: Path, tmp: str | None = None) -> Iterator[None]:
    """Re-raise an OSError of writing ``path`` as one naming ``path``: any OSError while the
    temporary file is made (``tmp`` None), else one about ``tmp`` (or a file in it) or about
    no file (a full disk). A library's own exception carrying an OS error in its text (the
    tokenizers and safetensors savers) becomes the same OSError."""
    try:
        yield
    except OSError as exc:
        name = None if exc.filename is None else str(exc.filename)
        ours = tmp is None or name is None or name == tmp or name.startswith(tmp + os.sep)
        if exc.errno is None or not ours:
            raise
        raise type(exc)(exc.errno, f"cannot write ({exc.strerror})", str(path)) from None
    except Exception as exc:
        found = OS_ERROR_IN_TEXT.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1) or found.group(2))
        raise OSError(code, f"cannot write ({os.strerror(code)})", str(path)) from None


def naming_output(path: Path | str, tmp: Path | str) -> ContextManager[None]:
    """For code that writes output ``path`` through its own temporary folder ``tmp``: an OS
    error while writing there (a full disk, no permission) -> an OSError naming ``path``,
    which stages print as one line."""
    return _naming_output(Path(path), str(tmp))


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    with _naming_output(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs should read like any file
    try:
        with _naming_output(path, tmp):
            yield Path(tmp)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    with _naming_output(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; an output folder reads like any other
    try:
        with _naming_output(path, str(tmp)):
            yield tmp
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tensors(path: Path | str) -> Any:
    """``torch.load`` of a file this project wrote (a state dict, an optimizer or RNG state),
    with ``weights_only=True``: a file that would unpickle anything but tensors and plain
    containers is refused, as an InputError naming it, and nothing in it is run."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error: ([^\n]*)", str(exc))
        detail = found.group(1).strip() if found else " ".join(str(exc).split())[:200]
        raise InputError(f"{path}: refused by torch.load(weights_only=True): it holds more than "
                         f"tensors ({detail})") from None


def lock_file(folder: Path | str) -> Path:
    """The lock file of a run writing ``folder``: ``<folder>.lock`` beside it (the run removes
    the folder itself when it ends)."""
    folder = Path(folder)
    return folder.with_name(folder.name + ".lock")


@contextmanager
def run_lock(lock: Path | str, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (created if missing; it holds the holder's pid)
    for the ``with`` block: a second run of ``what`` on the same outputs fails at once with an
    InputError naming the lock and the pid holding it. The kernel drops the lock when its
    process dies, so a killed run never blocks the next one. Under a launcher only the first
    process (RANK 0) takes it; on a system without ``fcntl`` this does nothing."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    if int(os.environ.get("RANK", "0") or 0) != 0:
        yield
        return
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise InputError(f"{lock}: locked by process {holder}, another {what} run on the "
                             f"same outputs; wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """On Linux, have the kernel send ``sig`` to this process when its parent dies (prctl
    PR_SET_PDEATHSIG; kept across exec), so killing ``dvc`` or a launcher ends the stage
    instead of leaving it training beside the rerun. If the parent died before the call, exit
    now. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(sig), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG = 1
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


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
        return json.loads(decode_utf8(path.read_bytes(), path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def decode_utf8(data: bytes, path: Path | str, first_line: int = 1) -> str:
    """``data`` as text; InputError naming the file, line and column of the first byte that is
    not UTF-8 (``first_line``: the line ``data`` starts on)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at "
                         f"column {column})") from None


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
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = decode_utf8(raw, path, lineno)
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


def check_token_ids(row: dict, where: str) -> None:
    """An optional ``action_ids`` (absent or null: none) must be a list of token ids: training
    scores them as the action, so a bad one must fail here, not as a wrong embedding lookup."""
    ids = row.get("action_ids")
    if ids is not None and not (isinstance(ids, list)
                                and all(type(t) is int and t >= 0 for t in ids)):
        raise InputError(f"{where}: field 'action_ids' should be a list of token ids")
