"""Apply a parameter profile (profiles/<name>.yaml) onto params.yaml, keeping its comments.

    python scripts/profile.py tiny        # seconds-long end-to-end run (tests, smoke checks)
    python scripts/profile.py gpu-llama3  # a real model on a GPU

A profile holds only the keys it changes; an unknown key is refused so a typo never passes
silently. Use git to go back (``git checkout params.yaml``) or ``dvc exp run -S`` for one-off
changes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent


def merge(target, overrides, where: str = "") -> None:
    for key, value in overrides.items():
        path = f"{where}{key}"
        if key not in target:
            raise KeyError(f"profile key '{path}' does not exist in params.yaml")
        if isinstance(value, dict) and isinstance(target[key], dict):
            merge(target[key], value, path + ".")
        else:
            target[key] = value


def apply_profile(name: str, params: Path = ROOT / "params.yaml") -> None:
    yaml = YAML()
    yaml.preserve_quotes = True
    profile_file = ROOT / "profiles" / f"{name}.yaml"
    if not profile_file.exists():
        known = ", ".join(sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml")))
        raise KeyError(f"no profile '{name}'; known profiles: {known}")
    data = yaml.load(params)
    merge(data, yaml.load(profile_file) or {})
    with open(params, "w") as fh:
        yaml.dump(data, fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    try:
        apply_profile(args.name, args.params)
    except KeyError as exc:
        sys.exit(f"error: {exc.args[0]}")
    print(f"applied profile '{args.name}' to {args.params}")


if __name__ == "__main__":
    main()
