"""Run by tests/test_faults.py under ``src.launch`` with 2 processes: once the process group is
up, the first process prints (JSON) the address of every listening TCP socket held by the
launcher and its worker processes, so the test can check that none listens beyond 127.0.0.1.
It runs as a stage does (run_main: each worker dies with the launcher that started it)."""
import json
import os
from pathlib import Path

from src import distributed
from src.config import run_main


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening() -> dict[str, str]:
    """inode -> local address (hex, as /proc/net/tcp writes it) of every listening socket."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found[fields[9]] = fields[1]
    return found


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def main() -> None:
    distributed.barrier()  # the process group is up: every store and gloo pair is listening
    if distributed.is_main():
        launcher = os.getppid()
        pids = [launcher, *children(launcher)]
        held = set().union(*(socket_inodes(pid) for pid in pids))
        print("LISTENING " + json.dumps(sorted(a for i, a in listening().items() if i in held)),
              flush=True)
    distributed.barrier()


if __name__ == "__main__":
    run_main(main)  # as a stage runs: it dies with its parent, the launcher
