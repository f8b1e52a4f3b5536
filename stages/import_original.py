"""Convert the original ARIA release's rollout files into data/rollouts/<game>.jsonl.

usage: python -m stages.import_original --game GAME [--out PATH] FILE [FILE ...]

FILE: a JSON list of episodes or a JSON-lines file, as released with the original code.
See src/importer.py for the fields read and how the chat messages are reconstructed.
"""
import argparse
from pathlib import Path

from src.config import run_main
from src.importer import GAMES, import_original
from src.io_utils import write_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.import_original", description=__doc__.splitlines()[0])
    parser.add_argument("--game", required=True, choices=GAMES)
    parser.add_argument("--out", type=Path, help="default: data/rollouts/<game>.jsonl")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = parser.parse_args()
    out = args.out or Path(f"data/rollouts/{args.game}.jsonl")
    n = write_jsonl(out, import_original(args.game, args.files))
    print(f"imported {n} episodes into {out}")


if __name__ == "__main__":
    run_main(main)
