"""Resumable training state.

A checkpoint is a folder ``step-NNNNNNN`` holding the trainable tensors (the LoRA weights, or
every weight under full fine-tuning), the optimizer state, each process's torch RNG state
(dropout) and ``state.json`` (the data position = global step, the logged history, and a
fingerprint of the configuration and data). It is written under a temporary name and renamed,
so a killed run always leaves the previous complete checkpoint; older ones are then deleted.
The batch order is a pure function of (seed, epoch), so step + tensors + RNG is the whole state.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from src.io_utils import InputError, load_tensors, write_json
from src.training.reinforce import trainable_parameters

PREFIX = "step-"


class TrainingError(InputError):
    """A run that cannot go on; the message says why and what was kept."""


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps done = position in the batch schedule
    history: list[dict] = field(default_factory=list)  # one {metric: value} per step
    validation: list[dict] = field(default_factory=list)  # {step, reward per game}, held-out play


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob(f"{PREFIX}*")) if directory.is_dir() else []
    return found[-1] if found else None


def _rng_state() -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, state: TrainerState, fingerprint: str, model, optimizer,
                    accelerator) -> Path:
    name = f"{PREFIX}{state.step:07d}"
    tmp, final = directory / f".{name}.tmp", directory / name
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        tensors = {n: p.detach().cpu().contiguous() for n, p in trainable_parameters(model).items()}
        save_file(tensors, tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"step": state.step, "history": state.history,
                                        "validation": state.validation,
                                        "fingerprint": fingerprint})
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in directory.glob(f"{PREFIX}*"):
            if old != final:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(directory: Path, fingerprint: str, model, optimizer,
                    accelerator) -> TrainerState:
    """Restore the latest checkpoint into ``model``/``optimizer``/RNG, or start fresh.

    A checkpoint of another configuration or data set is discarded (with a notice); an
    unreadable one stops the run, because silently restarting would hide lost work.
    """
    latest = latest_checkpoint(directory)
    if latest is None:
        return TrainerState()
    try:
        meta = json.loads((latest / "state.json").read_text(encoding="utf-8"))
        if meta["fingerprint"] != fingerprint:
            accelerator.print(f"{latest}: checkpoint of another configuration or data; "
                              "training from scratch")
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                shutil.rmtree(directory)
            return TrainerState()
        tensors = load_file(latest / "trainable.safetensors")
        missing = sorted(set(trainable_parameters(model)) - set(tensors))
        if missing:
            raise ValueError(f"{len(missing)} trainable tensors missing, e.g. {missing[0]}")
        model.load_state_dict(tensors, strict=False)
        optimizer.load_state_dict(load_tensors(latest / "optimizer.pt"))
        rng = latest / f"rng-{accelerator.process_index}.pt"
        if rng.exists():  # absent when resuming with more processes: that rank starts afresh
            _set_rng_state(load_tensors(rng))
        return TrainerState(step=int(meta["step"]), history=list(meta["history"]),
                            validation=list(meta.get("validation", [])))
    except (OSError, EOFError, KeyError, ValueError, RuntimeError, pickle.UnpicklingError,
            SafetensorError, InputError) as exc:
        raise TrainingError(f"{latest}: unreadable checkpoint ({' '.join(str(exc).split())}); "
                            f"delete {directory} to train from scratch") from None
