"""Running real git / dvc commands in throwaway repositories made from this project."""
from __future__ import annotations

import importlib
import os
import shutil
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


ALWAYS_RUNS = "check-params"  # always_changed: checks params.yaml on every repro, reruns nothing


def ran(output: str, always: bool = False) -> set[str]:
    """Stage names that `dvc repro` / `dvc exp run` actually executed (check-params, which
    runs on every repro, only with ``always``)."""
    names = {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}
    return names if always else names - {ALWAYS_RUNS}


def git_init(repo: Path, message: str) -> None:
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.email", "test@example.com")
    run(repo, "git", "config", "user.name", "test")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", message)


def tiny_project(repo: Path) -> Path:
    """This project's tracked and new files (no recorded outputs) copied into ``repo``, with
    the tiny profile applied; the caller commits it (``git_init``) after its own changes."""
    files = run(ROOT, "git", "ls-files", "-co", "--exclude-standard").split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("data/", "metrics/", "reports/", "plots/")) \
                and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "data" / "kb", repo / "data" / "kb")
    run(repo, sys.executable, "scripts/profile.py", "tiny")
    return repo


def run_stage(name: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run ``python -m stages.<name> ARGV`` in this process: (exit code, stderr)."""
    from src.config import run_main

    module = importlib.import_module(f"stages.{name}")
    monkeypatch.setattr(sys, "argv", [name, *argv])
    try:
        run_main(module.main)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err
