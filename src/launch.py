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

Several processes on one machine talk over 127.0.0.1 only: torch's rendezvous store would
listen on every interface whatever address it is given, so accelerate launch runs in this
module (``--accelerate-on-loopback``) with the store's server handed a socket bound to
127.0.0.1, and gloo / NCCL bind to the loopback interface. A multi-node run names its
addresses itself, in an accelerate config file (``launch.config_file``) or in
``launch.accelerate_args`` (``--num_machines``, ``--main_process_ip``, ...): used as given.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass

import torch

from src.io_utils import die_with_parent

OPTIONS = {"processes": "1", "mixed_precision": "no", "config_file": "", "accelerate_args": "",
           "side_by_side": "1"}
MIXED_PRECISION = ("no", "fp16", "bf16")
LOOPBACK = "127.0.0.1"
ON_LOOPBACK = "--accelerate-on-loopback"  # python -m src.launch ON_LOOPBACK <accelerate launch args>
PER_SEED_GAME_STAGES = ("stages.rollout", "stages.iterate_rollout", "stages.evaluate")  # one process per seed, every game: --game splits them
MULTI_NODE_ARGS = ("--num_machines", "--main_process_ip", "--machine_rank", "--rdzv_backend",
                   "--same_network")  # in accelerate_args: the user sets the network up


@dataclass
class LaunchConfig:
    """params.yaml's ``launch`` section, as the check-params stage validates it (dvc.yaml
    passes the section to this module as options, which :func:`parse` checks again)."""
    processes: int  # 1: plain python; N > 1: accelerate launch with N processes
    mixed_precision: str  # "no" | fp16 | bf16
    config_file: str  # an accelerate config file, or ""
    accelerate_args: str  # more accelerate launch arguments, one string
    side_by_side: int  # per-seed stages with one process: games played in this many processes at once, one thread each

    def validate(self) -> str | None:
        if self.processes < 1:
            return f"processes must be an integer >= 1, got {self.processes}"
        if self.side_by_side < 1:
            return f"side_by_side must be an integer >= 1, got {self.side_by_side}"
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
    for key in ("processes", "side_by_side"):
        if not options[key].isdigit() or int(options[key]) < 1:
            raise SystemExit(f"launch.{key} must be an integer >= 1, got {options[key]!r}")
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
        single_node = processes > 1 and not any(
            arg.split("=")[0] in MULTI_NODE_ARGS for arg in extra)
        if single_node:  # the stores and the process group on 127.0.0.1 only
            launch = [sys.executable, "-m", "src.launch", ON_LOOPBACK]
            if sys.platform.startswith("linux"):
                env.setdefault("GLOO_SOCKET_IFNAME", "lo")
                env.setdefault("NCCL_SOCKET_IFNAME", "lo")
        launch += ["--num_processes", str(processes), "--num_machines", "1",
                   "--mixed_precision", options["mixed_precision"], "--dynamo_backend", "no"]
        if processes > 1:
            launch += ["--multi_gpu", "--main_process_port", "0"]  # 0: any free port
        if single_node:
            launch += ["--main_process_ip", LOOPBACK]
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"  # processes talk over gloo
        threads = max(1, (os.cpu_count() or 1) // processes)
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return [*launch, *extra, "-m", *stage], env


def serve_stores_on_loopback() -> None:
    """Make torch's rendezvous store servers listen on 127.0.0.1 only. TCPStore's server binds
    every interface whatever host it is given, but takes a listening socket: torchrun's
    rendezvous backends get a TCPStore that, as the server for a loopback host, passes one
    bound to 127.0.0.1."""
    import socket
    from datetime import timedelta

    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import (c10d_rendezvous_backend,
                                                      static_tcp_rendezvous)

    class LoopbackTCPStore(dist.TCPStore):
        def __init__(self, host_name, port, world_size=None, is_master=False,
                     timeout=timedelta(seconds=300), wait_for_workers=True, multi_tenant=False,
                     master_listen_fd=None, use_libuv=True):
            if is_master and master_listen_fd is None and host_name in (LOOPBACK, "localhost"):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((LOOPBACK, port))
                sock.listen(socket.SOMAXCONN)
                port, master_listen_fd = sock.getsockname()[1], sock.detach()
            super().__init__(host_name, port, world_size, is_master, timeout, wait_for_workers,
                             multi_tenant, master_listen_fd, use_libuv)

    for module in (dist, static_tcp_rendezvous, c10d_rendezvous_backend):
        module.TCPStore = LoopbackTCPStore


def accelerate_on_loopback(args: list[str]) -> None:
    """``accelerate launch ARGS`` in this process, its stores on 127.0.0.1 (see above)."""
    from accelerate.commands.launch import main as accelerate_launch

    serve_stores_on_loopback()
    sys.argv = ["accelerate launch", *args]
    accelerate_launch()


def game_commands(options: dict[str, str], stage: list[str]) -> list[list[str]]:
    """A per-seed game stage (:data:`PER_SEED_GAME_STAGES`, without ``--game``) in one process
    and ``side_by_side`` > 1: one command per game, to run that many at once; else [] (run the
    stage as it is). On a 2-core CPU two games side by side, one thread each, take about half the
    time of one process playing them in turn."""
    if int(options["side_by_side"]) < 2 or stage[0] not in PER_SEED_GAME_STAGES or "--game" in stage:
        return []
    cmd, _ = command({**options, "side_by_side": "1"}, stage)
    if cmd[:3] != [sys.executable, "-m", stage[0]]:
        return []  # under accelerate launch the processes share the episodes instead
    from src.game_names import GAME_NAMES

    return [[*cmd, "--game", game] for game in GAME_NAMES]


def run_side_by_side(commands: list[list[str]], at_once: int) -> int:
    """Run ``commands`` ``at_once`` at a time with one thread each; the first failure's exit
    code (its stderr has been shown), or 0."""
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending, running, failed = list(commands), [], 0
    while pending or running:
        while pending and len(running) < at_once and not failed:
            running.append(subprocess.Popen(pending.pop(0), env=env, preexec_fn=die_with_parent))
        done = next((p for p in running if p.poll() is not None), None)
        if done is None:  # whichever ends first frees its slot
            time.sleep(0.1)
            continue
        running.remove(done)
        if done.returncode and not failed:
            failed = done.returncode
            print(f"src.launch: {' '.join(done.args[2:])} failed (exit {failed})", file=sys.stderr)
        if failed:
            pending.clear()
    return failed


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [ON_LOOPBACK]:
        die_with_parent()
        accelerate_on_loopback(argv[1:])
        return
    options, stage = parse(argv)
    games = game_commands(options, stage)
    if games:
        die_with_parent()
        sys.exit(run_side_by_side(games, int(options["side_by_side"])))
    cmd, env = command(options, stage)
    die_with_parent()  # the stage (or accelerate's launcher) ends when dvc does; kept across exec
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
