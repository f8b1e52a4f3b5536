"""iterate-start: iteration 1's aria policy of one training seed, where the next iteration
finds it (models/policies/s<seed>/aria -> models/policies/i1/s<seed>/aria; src/rollout/iterations.py).
Every iteration i >= 2 then reads models/policies/i<i-1>/s<seed>/aria, one pattern for all."""
import argparse
import shutil

from src.config import ConfigError, run_main
from src.io_utils import InputError, atomic_dir
from src.paths import RunPaths, iteration_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", required=True, type=int, help="training seed (train.seeds)")
    args = parser.parse_args()
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: training seeds are >= 0")
    source = RunPaths.for_variant("aria", args.seed).output
    if not source.is_dir():
        raise InputError(f"{source}: not found; run train-offline@aria-{args.seed}")
    with atomic_dir(iteration_policy(args.seed, 1)) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)


if __name__ == "__main__":
    run_main(main)
