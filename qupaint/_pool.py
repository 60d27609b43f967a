"""One way to run independent tasks in this process or a pool of worker processes.

Workers start from a *forkserver* by default (``spawn`` off POSIX): a child forked from a
process whose OpenMP pool has already run (our C++ kernels) hangs in its first parallel
region, since libgomp is not fork-safe. Pure-Python work may ask for ``fork`` (cheaper:
the parent's memory is shared, nothing is pickled).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["run_tasks"]


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    workers: int = 1,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    ordered: bool = True,
    chunksize: int = 1,
    start: str = "forkserver",
    preload: Iterable[str] = (),
) -> Iterator[Any]:
    """Yield ``fn(task)`` for every task: in this process when ``workers`` is 1 (or there is
    at most one task), else from ``workers`` processes, in task order when ``ordered``.

    ``initializer(*initargs)`` runs once per process first; ``preload`` names modules the
    forkserver imports once, so that workers fork with them loaded.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if not tasks:  # nothing to do: the initializer (which may set this process's thread
        return  # counts for a worker) must not run in the caller
    if workers == 1 or len(tasks) == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, tasks)
        return
    method = start if os.name == "posix" else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver" and preload:
        ctx.set_forkserver_preload(list(preload))
    with ctx.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        run = pool.imap if ordered else pool.imap_unordered
        yield from run(fn, tasks, chunksize)
