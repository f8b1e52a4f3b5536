"""Typed access to params.yaml.

Each stage owns one dataclass (defined next to the code that uses it) and loads its section
with :func:`load_section`. The dataclass fields have no defaults: params.yaml holds every value
once, so a missing key fails like an unknown key, a misspelled key or a wrong type (OmegaConf's
structured merge); we turn that into one readable line and a non-zero exit. Code that builds a
config without a stage (tests, benches) starts from params.yaml too, through :func:`defaults`.
A NaN or infinite number anywhere in the file is an error at load, and every stage
(:func:`run_main`) first rejects a top-level section that no stage reads (``select-k:`` for
``select_k:``).
"""
from __future__ import annotations

import difflib
import math
import re
import sys
from contextlib import contextmanager
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

T = TypeVar("T")
PARAMS_FILE = Path("params.yaml")  # stages run in the repository root (dvc.yaml)
REPO_PARAMS = Path(__file__).resolve().parents[1] / PARAMS_FILE  # wherever tests run
# Every top-level section of params.yaml some stage reads (dvc.yaml lists them per stage).
# A new section must be added here, or every stage rejects the file.
SECTIONS = ("model", "miniature", "launch", "games", "rollout", "cluster", "select_k", "build", "train",
            "grad_variance", "rm", "online", "evaluate", "report", "limits", "dpo", "iterate")


class ConfigError(SystemExit):
    """A bad params file: carries one line for the user and exits with status 2."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def read_params(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the repository root)")
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:  # yaml errors carry line numbers in their text
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    data = OmegaConf.to_container(raw, resolve=False)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    _check_finite(data, str(path), "")
    return data


def check_params(path: Path | str = PARAMS_FILE) -> None:
    """The whole params file, before a stage runs: readable, finite, no top-level section
    that no stage reads (a misspelled one would otherwise be silently ignored), and game seeds
    that are not negative and whose ranges do not overlap (:func:`check_seeds`)."""
    if not Path(path).exists():
        return  # a stage that needs a section says so when it loads it
    data = read_params(path)
    for name in data:
        if name not in SECTIONS:
            close = difflib.get_close_matches(str(name), SECTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown section '{name}'{hint}; sections: "
                              f"{', '.join(SECTIONS)}")
    check_seeds(data, str(path))


def _int_at(data: dict, dotted: str) -> int | None:
    """The integer at ``a.b.c`` of the raw params, or None (absent or not an integer: the
    section's dataclass reports that when it loads)."""
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, int) and not isinstance(node, bool) else None


def seed_ranges(data: dict) -> list[tuple[str, int, int]]:
    """(name, first, end): the game seeds [first, end) each stage plays, from the raw params.
    Training seed s's rollout episode i plays game seed rollout.seed + s * episodes + i (one
    range per training seed); validation and evaluation play the setups from their seed on
    (evaluation: its longest list, the primary comparison's); online iteration t, episode j
    plays online.seed + t * episodes + j; the miniature's scripted corpus plays
    miniature.seed + i; ARIA iteration i >= 2 of training seed s plays its own range
    (:func:`iteration_ranges`). A range whose keys are missing or mistyped is left out (its section
    fails when loaded)."""
    def count(*keys: str) -> int | None:
        values = [_int_at(data, key) for key in keys]
        return None if None in values else math.prod(values)  # type: ignore[arg-type]

    ranges = []
    first, episodes = _int_at(data, "rollout.seed"), count("rollout.episodes")
    train_seeds = (data.get("train") or {}).get("seeds") if isinstance(data.get("train"), dict) else None
    if first is not None and episodes is not None and isinstance(train_seeds, list):
        for s in train_seeds:
            if isinstance(s, int) and not isinstance(s, bool):
                if s < 0:
                    raise ConfigError(f"params.yaml: train.seeds: {s} is negative; seeds start at 0")
                start = first + s * max(episodes, 0)
                ranges.append((f"rollout.seed of training seed {s}", start, start + max(episodes, 0)))
    plans = [("miniature.seed", count("miniature.episodes_per_game")),
             ("train.validation.seed", count("train.validation.episodes")),
             ("online.seed", count("online.iterations", "online.episodes")),
             ("evaluate.seed", max((n for n in (count("evaluate.episodes"),
                                                count("evaluate.primary_comparison.episodes"))
                                   if n is not None), default=None))]
    for key, n in plans:
        first = _int_at(data, key)
        if first is not None and n is not None:
            ranges.append((key, first, first + max(n, 0)))
    return ranges + iteration_ranges(data, train_seeds)


def iteration_ranges(data: dict, train_seeds: Any) -> list[tuple[str, int, int]]:
    """Iteration i's rollouts of training seed s (src/rollout/iterations.py): game seeds from
    iterate.seed + (i - 2) * iterate.seed_stride + s * iterate.episodes, one range each."""
    first, episodes = _int_at(data, "iterate.seed"), _int_at(data, "iterate.episodes")
    stride = _int_at(data, "iterate.seed_stride")
    entries = (data.get("iterate") or {}).get("iterations") if isinstance(data.get("iterate"), dict) else None
    if None in (first, episodes, stride) or not isinstance(entries, list) \
            or not isinstance(train_seeds, list):
        return []
    ranges = []
    for entry in entries:
        i = entry.get("iteration") if isinstance(entry, dict) else None
        if not isinstance(i, int) or isinstance(i, bool):
            continue
        for s in train_seeds:
            if isinstance(s, int) and not isinstance(s, bool) and s >= 0:
                start = first + (i - 2) * stride + s * max(episodes, 0)  # type: ignore[operator]
                ranges.append((f"iterate.seed of iteration {i}, training seed {s}", start,
                               start + max(episodes, 0)))  # type: ignore[arg-type]
    return ranges


def check_seed_ranges(ranges: list[tuple[str, int, int]], where: str) -> None:
    """Named game-seed ranges [first, end) must not start below 0 and must not overlap: a
    policy must never be tuned or evaluated on a setup it was trained on. Takes any list, so
    more ranges (one per training seed, say) are checked the same way."""
    for name, first, _ in ranges:
        if first < 0:
            raise ConfigError(f"{where}: {name}: {first} is negative; game seeds start at 0")
    for i, (a, a0, a1) in enumerate(ranges):
        for b, b0, b1 in ranges[i + 1:]:
            if a0 < a1 and b0 < b1 and a0 < b1 and b0 < a1:
                raise ConfigError(f"{where}: seed ranges overlap: {a} plays [{a0}, {a1}) and "
                                  f"{b} plays [{b0}, {b1}); each stage needs its own game seeds")


def check_seeds(data: dict, where: str) -> None:
    """No seed anywhere in the params is negative (``random.Random(-4)`` plays as 4), and the
    game-seed ranges of rollout, validation, online and evaluation are disjoint."""
    def negative(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for name, child in node.items():
                negative(child, f"{key}.{name}" if key else str(name))
        elif key.rpartition(".")[2] == "seed" and isinstance(node, int) \
                and not isinstance(node, bool) and node < 0:
            raise ConfigError(f"{where}: {key}: {node} is negative; seeds start at 0")
        elif key.rpartition(".")[2] == "seeds" and isinstance(node, list):
            for seed in node:
                if isinstance(seed, int) and not isinstance(seed, bool) and seed < 0:
                    raise ConfigError(f"{where}: {key}: {seed} is negative; seeds start at 0")

    negative(data, "")
    check_seed_ranges(seed_ranges(data), where)


def _check_finite(value: Any, where: str, key: str) -> None:
    """NaN or infinity in any param is an error naming its key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {key}: {value} is not a finite number")
    children = (value.items() if isinstance(value, dict)
                else enumerate(value) if isinstance(value, list) else ())
    for name, child in children:
        _check_finite(child, where, f"{key}.{name}" if key else str(name))


def to_config(cls: type[T], values: Any, where: str) -> T:
    """Merge ``values`` into the structured schema of ``cls``; bad keys/types -> ConfigError."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), values)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        msg = ("missing key (every value lives in params.yaml)"
               if isinstance(exc, MissingMandatoryValue) else str(exc).splitlines()[0])
        raise ConfigError(f"{where}{'.' + key if key else ''}: {msg}") from None
    _check(obj, where)
    return obj


def load_section(section: str, cls: type[T], path: Path | str = PARAMS_FILE) -> T:
    """Load one top-level section of params.yaml into dataclass ``cls``."""
    data = read_params(path)
    if section not in data:
        raise ConfigError(f"{path}: missing section '{section}'")
    return to_config(cls, data[section], f"{path}: {section}")


def defaults(cls: type[T], section: str, path: Path | str = REPO_PARAMS, **overrides: Any) -> T:
    """params.yaml's ``section`` (dotted: ``train.lora``) in ``cls``, each keyword replacing one
    key's whole value: tests and benches build configs from the values the stages use."""
    values: Any = read_params(path)
    for key in section.split("."):
        if not isinstance(values, dict) or key not in values:
            raise ConfigError(f"{path}: missing section '{section}'")
        values = values[key]
    plain = {k: asdict(v) if is_dataclass(v) else v for k, v in overrides.items()}
    return to_config(cls, {**values, **plain}, f"{path}: {section}")


def _check(obj: Any, where: str) -> None:
    """Run ``validate()`` hooks (range checks) of a config and its nested configs."""
    if not is_dataclass(obj):
        return
    for f in fields(obj):
        _check(getattr(obj, f.name), f"{where}.{f.name}")
    validate = getattr(obj, "validate", None)
    if callable(validate):
        problem = validate()
        if problem:
            # "dtype 'int8' is not ..." -> "params.yaml: model.dtype 'int8' is not ..."
            first = re.split(r"[ :]", problem, maxsplit=1)[0]
            joint = "." if first in {f.name for f in fields(obj)} else ": "
            raise ConfigError(f"{where}{joint}{problem}")


@contextmanager
def refusing_custom_code(folder: Path | str):
    """Turn transformers' refusal of a model folder's own code (an ``auto_map`` in its config,
    loaded with ``trust_remote_code=False``) into one line naming the folder."""
    try:
        yield
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise ConfigError(f"{folder}: the folder asks to run its own Python code (auto_map in its "
                          f"config); refused: models, tokenizers and encoders are loaded with "
                          f"trust_remote_code=False") from None


def run_main(main) -> None:
    """Entry wrapper for stage scripts: ConfigError / InputError / OSError (a file that cannot
    be read or written) print one line, exit != 0. A stage run as a program (``python -m``)
    ends when the process that started it dies (:func:`src.io_utils.die_with_parent`)."""
    from src.io_utils import InputError, die_with_parent

    if getattr(main, "__module__", None) == "__main__":
        die_with_parent()
    try:
        check_params()
        main()
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)
    except OSError as exc:  # an output folder that cannot be written, a full disk, ...
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(4)
