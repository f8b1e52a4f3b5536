"""Run a stage as plain ``python -m`` or under ``accelerate launch``, as the ``launch`` params say.

dvc.yaml runs every stage that can use several processes through this module, with the
``launch`` section unpacked into its command line (DVC templating)::

    cmd: python -m src.launch ${launch} -- stages.rollout --game ${item}

which DVC renders as ``python -m src.launch --processes 1 --mixed_precision 'no'
--config_file '' --accelerate_args '' -- stages.rollout --game bargaining``. With one
process, no mixed precision, no config file and no extra arguments the stage module replaces
this process (``exec``), exactly as ``python -m stages.rollout`` would run; otherwise it runs
under ``accelerate launch``. Because the launch settings are part of the command, changing
them (``dvc exp run -S launch.processes=2``) reruns the stages under the new launcher.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass

import torch

OPTIONS = {"processes": "1", "mixed_precision": "no", "config_file": "", "accelerate_args": ""}
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class LaunchConfig:
    """params.yaml's ``launch`` section, as the check-params stage validates it (dvc.yaml
    passes the section to this module as options, which :func:`parse` checks again)."""
    processes: int  # 1: plain python; N > 1: accelerate launch with N processes
    mixed_precision: str  # "no" | fp16 | bf16
    config_file: str  # an accelerate config file, or ""
    accelerate_args: str  # more accelerate launch arguments, one string

    def validate(self) -> str | None:
        if self.processes < 1:
            return f"processes must be an integer >= 1, got {self.processes}"
        if self.mixed_precision not in MIXED_PRECISION:
            return (f"mixed_precision must be one of {list(MIXED_PRECISION)} (write \"no\" in "
                    f"quotes), got {self.mixed_precision!r}")
        return None


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(launch options, the stage module and its arguments) from ``--key value ... -- module
    args``; each value is one word (DVC quotes strings)."""
    if "--" not in argv:
        raise SystemExit("usage: python -m src.launch [--processes N] [--mixed_precision M] "
                         "[--config_file F] [--accelerate_args 'ARGS'] -- stages.<name> [args]")
    split = argv.index("--")
    head, stage = argv[:split], argv[split + 1:]
    options = dict(OPTIONS)
    if len(head) % 2:
        raise SystemExit(f"src.launch: options come in --key value pairs, got {head}")
    for key, value in zip(head[::2], head[1::2]):
        name = key.removeprefix("--").replace("-", "_")
        if not key.startswith("--") or name not in OPTIONS:
            raise SystemExit(f"src.launch: unknown option {key} (known: {', '.join(OPTIONS)})")
        options[name] = value
    if not stage:
        raise SystemExit("src.launch: no stage module after --")
    if not options["processes"].isdigit() or int(options["processes"]) < 1:
        raise SystemExit(f"launch.processes must be an integer >= 1, got {options['processes']!r}")
    if options["mixed_precision"] not in MIXED_PRECISION:
        raise SystemExit(f"launch.mixed_precision must be one of {list(MIXED_PRECISION)} "
                         f"(write \"no\" in quotes), got {options['mixed_precision']!r}")
    return options, stage


def command(options: dict[str, str], stage: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``stage`` as the options say."""
    processes = int(options["processes"])
    extra = shlex.split(options["accelerate_args"])
    env = dict(os.environ)
    if processes == 1 and options["mixed_precision"] == "no" and not options["config_file"] \
            and not extra:
        return [sys.executable, "-m", *stage], env
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    if options["config_file"]:
        # The config file (accelerate config) holds the topology: processes, machines,
        # machine rank, main process address; launch.processes is not passed.
        launch += ["--config_file", options["config_file"]]
    else:
        launch += ["--num_processes", str(processes), "--num_machines", "1",
                   "--mixed_precision", options["mixed_precision"], "--dynamo_backend", "no"]
        if processes > 1:
            launch += ["--multi_gpu", "--main_process_port", "0"]  # 0: any free port
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"  # processes talk over gloo
        threads = max(1, (os.cpu_count() or 1) // processes)
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return [*launch, *extra, "-m", *stage], env


def main(argv: list[str] | None = None) -> None:
    options, stage = parse(sys.argv[1:] if argv is None else argv)
    cmd, env = command(options, stage)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
