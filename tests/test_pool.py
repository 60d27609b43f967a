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
