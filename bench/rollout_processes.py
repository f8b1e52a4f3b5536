"""Wall time of one game's rollout with 1 and with 2 (or more) processes.

    python bench/rollout_processes.py --game twenty_questions               # params.yaml's rollout
    python bench/rollout_processes.py --game bargaining --episodes 8 --processes 1 2

Each count runs the rollout stage's own code (``src.rollout.play.self_play`` with params.yaml's
``model``, ``games`` and ``rollout`` sections, ``--episodes`` overriding the count) under
``python -m src.launch --processes P``, i.e. exactly as ``dvc repro`` runs the stage with
``launch.processes: P`` -- but nothing under data/ or metrics/ is written. Prints each wall
time (launch and model loading included, and the play alone), the ratio to one process, and
whether every process count produced byte-identical episodes. With ``--json`` also writes the
figures. On a CPU the processes split the cores (OMP_NUM_THREADS = cores / processes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(game: str, episodes: int | None, model: str, out: Path) -> None:
    """One process of a launched run: play this process's share, main writes a summary."""
    from src import distributed
    from src.config import load_section
    from src.games import GamesConfig
    from src.policy.models import ModelConfig
    from src.policy.policy import Policy
    from src.rollout.play import RolloutConfig, self_play

    model_cfg = load_section("model", ModelConfig)
    cfg = load_section("rollout", RolloutConfig)
    if episodes:
        cfg.episodes = episodes
    policy = Policy.load(model, model_cfg.dtype, model_cfg.device, name="base")
    distributed.barrier()
    began = time.perf_counter()
    records, metrics = self_play(game, load_section("games", GamesConfig), policy, cfg)
    seconds = time.perf_counter() - began
    if distributed.is_main():
        blob = "\n".join(json.dumps(r, sort_keys=True) for r in records)
        out.write_text(json.dumps({
            "play_seconds": seconds, "episodes": len(records),
            "generated_tokens": metrics["generated_tokens"],
            "sha256": hashlib.sha256(blob.encode()).hexdigest()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="twenty_questions")
    parser.add_argument("--episodes", type=int, default=0, help="0: rollout.episodes of params.yaml")
    parser.add_argument("--model", default="models/base")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.game, args.episodes or None, args.model, args.worker)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes in args.processes:
            out = Path(tmp) / f"p{processes}.json"
            cmd = [sys.executable, "-m", "src.launch", "--processes", str(processes), "--",
                   "bench.rollout_processes", "--game", args.game, "--episodes", str(args.episodes),
                   "--model", args.model, "--worker", str(out)]
            began = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True,
                           env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
            row = {"processes": processes, "wall_seconds": time.perf_counter() - began,
                   **json.loads(out.read_text())}
            rows.append(row)
            print(f"processes={processes} wall={row['wall_seconds']:.1f}s "
                  f"play={row['play_seconds']:.1f}s episodes={row['episodes']} "
                  f"generated_tokens={row['generated_tokens']}", flush=True)
    base = rows[0]
    for row in rows:
        row["wall_ratio_to_first"] = row["wall_seconds"] / base["wall_seconds"]
        row["play_ratio_to_first"] = row["play_seconds"] / base["play_seconds"]
    identical = len({row["sha256"] for row in rows}) == 1
    print(f"play time ratio (vs {base['processes']} process): "
          + ", ".join(f"{r['processes']}: {r['play_ratio_to_first']:.2f}" for r in rows)
          + f"; identical episodes across process counts: {identical}")
    if args.json:
        args.json.write_text(json.dumps({"game": args.game, "cpu_count": os.cpu_count(),
                                         "identical_episodes": identical, "runs": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
