"""What offline and online training runs share around their optimizer steps: the fingerprint a
checkpoint must match to be resumed, the batch order, live logging, exporting the adapter and
ending a run (checkpoint files themselves: ``src.training.checkpoint``)."""
from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path

from src.io_utils import atomic_dir, write_json
from src.policy.models import sort_adapter_config

STEP_BASELINES = ("none", "batch_mean")  # applied to each minibatch by reinforce_step
BASELINES = (*STEP_BASELINES, "game_mean")  # offline also: each game's mean weight


def input_files(roots: list[Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file at or under ``roots``: a changed input is seen
    without reading it."""
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                  for root in roots for p in ([root] if root.is_file() else root.rglob("*"))
                  if p.is_file())


def run_fingerprint(settings: list, inputs: list[Path]) -> str:
    """What a checkpoint must match to be resumed: every setting of the run (dataclasses or
    JSON values) and every input file."""
    plain = [asdict(s) if is_dataclass(s) else s for s in settings]
    blob = json.dumps([plain, input_files(inputs)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def batch_order(n_records: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Record indices of global step ``step``: a fresh seeded permutation each epoch."""
    per_epoch = math.ceil(n_records / batch_size)
    epoch, position = divmod(step, per_epoch)
    order = list(range(n_records))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order[position * batch_size:(position + 1) * batch_size]


def open_live(directory: Path, history: list[dict]):
    """A DVCLive logger whose curves hold exactly the checkpointed steps (replayed on resume,
    so steps logged after the last checkpoint of a killed run do not appear twice)."""
    from dvclive import Live

    shutil.rmtree(directory, ignore_errors=True)
    live = Live(str(directory), dvcyaml=False, save_dvc_exp=False)
    for entry in history:
        log_step(live, entry)
    return live


def log_step(live, entry: dict) -> None:
    for name, value in entry.items():
        live.log_metric(name, value)
    live.next_step()


def export_adapter(model, tokenizer, output: Path) -> None:
    """Write the adapter and its tokenizer in one atomic step, the config keys sorted so
    reruns are byte-identical."""
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        sort_adapter_config(tmp)


def finish_run(metrics: dict, metrics_path: Path | None, checkpoints: Path) -> dict:
    """Write the metrics, then remove the checkpoints: only once every output of the run is
    in place, so a failed last write (read-only folder, full disk) loses no training."""
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
