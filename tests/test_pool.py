"""qupaint._pool.run_tasks: in-process and pooled runs, and an initializer that does not
leak into the caller when there is nothing to run."""

from __future__ import annotations

import torch

from qupaint._pool import run_tasks


def _square(x):
    return x * x


def _one_thread():
    torch.set_num_threads(1)


def test_in_process_and_pooled_give_the_same_results():
    tasks = list(range(7))
    assert list(run_tasks(_square, tasks)) == [x * x for x in tasks]
    assert list(run_tasks(_square, tasks, workers=2, start="fork")) == [x * x for x in tasks]


def test_no_tasks_runs_no_initializer_in_the_caller():
    """A resumed render (nothing left to do) once ran the workers' initializer in the
    caller, which set torch to one thread for the training that followed."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert list(run_tasks(_square, [], workers=2, initializer=_one_thread)) == []
        assert list(run_tasks(_square, [], workers=1, initializer=_one_thread)) == []
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


_KILLED_RUN = """
import os, sys, time
from qupaint._pool import run_tasks

def pid_then_sleep(_):
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(120)

if __name__ == "__main__":
    list(run_tasks(pid_then_sleep, [0, 1], workers=2, start=sys.argv[2]))
"""


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def test_workers_exit_when_the_run_that_started_them_is_killed(tmp_path):
    """SIGKILL of a run skips its pool's clean-up: its workers (~300 MB each in a scan)
    once kept running for half an hour. Each now exits within a second or two."""
    import signal
    import subprocess
    import sys
    import time

    import pytest

    if sys.platform != "linux":
        pytest.skip("reads /proc")
    for start in ("forkserver", "fork"):
        pids = tmp_path / f"{start}.txt"
        script = tmp_path / "killed_run.py"  # a file: forkserver workers import its function
        script.write_text(_KILLED_RUN)
        run = subprocess.Popen([sys.executable, str(script), str(pids), start])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(
                    pids.read_text().split() if pids.exists() else []) < 2:  # fmt: skip
                time.sleep(0.1)
            workers = [int(p) for p in pids.read_text().split()]
            assert len(workers) == 2 and all(_alive(p) for p in workers)
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), start
