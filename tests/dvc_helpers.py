"""Running real git / dvc commands in throwaway repositories made from this project."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cwd, *args) -> str:
    """Run a command with this interpreter's bin folder first on PATH (stage commands call
    ``python``); fail the test with its output when it exits non-zero."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def dvc(cwd, *args) -> str:
    return run(cwd, sys.executable, "-m", "dvc", *args)


def ran(output: str) -> set[str]:
    """Stage names that `dvc repro` / `dvc exp run` actually executed."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def git_init(repo: Path, message: str) -> None:
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.email", "test@example.com")
    run(repo, "git", "config", "user.name", "test")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", message)
