"""Convert the original ARIA release's rollout files into data/rollouts/s0/<game>.jsonl.

usage: python -m stages.import_original --game GAME [--out PATH] [--metrics PATH] FILE [FILE ...]

FILE: a JSON list of episodes or a JSON-lines file, as released with the original code.
See src/rollout/importer.py for the fields read and how the chat messages are reconstructed.
Episodes over the size limits (params.yaml ``limits``) are left out and counted in the
metrics, which describe the imported episodes (default: metrics/rollout/s0/<game>.json, the
rollout stage's metrics file for training seed 0, unless --out is given).
"""
import argparse
from pathlib import Path

from src.config import load_section, run_main
from src.paths import GameArtifacts
from src.rollout.importer import GAMES, import_metrics, import_original
from src.io_utils import InputError, write_json, write_jsonl
from src.limits import CHAR_REASONS, Limits


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.import_original", description=__doc__.splitlines()[0])
    parser.add_argument("--game", required=True, choices=GAMES)
    parser.add_argument("--out", type=Path, help="default: data/rollouts/s0/<game>.jsonl")
    parser.add_argument("--metrics", type=Path,
                        help="default: metrics/rollout/s0/<game>.json without --out, else none")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = parser.parse_args()
    artifacts = GameArtifacts(args.game)
    out = args.out or artifacts.rollouts
    metrics_path = args.metrics or (None if args.out else artifacts.rollout_metrics)
    limits = load_section("limits", Limits)
    left_out = dict.fromkeys(CHAR_REASONS, 0)
    episodes = list(import_original(args.game, args.files, limits, left_out))
    if not episodes:
        raise InputError(f"every episode of {', '.join(map(str, args.files))} is over the size "
                         f"limits (params.yaml limits): {left_out}")
    n = write_jsonl(out, episodes)
    if metrics_path is not None:
        write_json(metrics_path, import_metrics(episodes, left_out, args.files))
    skipped = sum(left_out.values())
    print(f"imported {n} episodes into {out}"
          + (f"; left out {skipped} over the size limits: {left_out}" if skipped else ""))


if __name__ == "__main__":
    run_main(main)
