"""Shared fixtures: a tiny random Llama with the SmolLM2 tokenizer, saved once per session."""
import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from src.policy.models import build_tiny_model

    path = tmp_path_factory.mktemp("tiny-model")
    model, tokenizer = build_tiny_model(seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir):
    from src.policy.policy import Policy

    return Policy.load(tiny_model_dir, device="cpu", name="tiny")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one mixed-precision setting per process (a later Accelerator with another
    raises); a stage is one process, so every test starts and ends afresh (TRL's trainers set it
    too)."""
    def reset():
        if "accelerate.state" in sys.modules:
            sys.modules["accelerate.state"].AcceleratorState._reset_state(reset_partial_state=True)

    reset()
    yield
    reset()
