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

__all__ = ["run_tasks", "watched_pool"]

#: how often (s) a worker checks that the process that started it is still alive
WATCH_S = 1.0


def _worker_start(parent: int, initializer, initargs) -> None:
    """A pool worker's first act: exit as soon as ``parent`` (the process that started the
    pool) is gone, so that a killed run (SIGKILL skips the pool's clean-up) leaves no
    workers behind; then the caller's ``initializer``."""
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(WATCH_S)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # a pid reused by another user's process
                os._exit(1)

    threading.Thread(target=watch, name="qupaint-parent-watch", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def watched_pool(workers: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple = (), start: str = "forkserver"):
    """A ``concurrent.futures.ProcessPoolExecutor`` whose workers exit when this process is
    gone (see :func:`_worker_start`), from a forkserver (``spawn`` off POSIX)."""
    import concurrent.futures as cf

    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    ctx = mp.get_context(start if os.name == "posix" else "spawn")
    return cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_start,
                                  initargs=(os.getpid(), initializer, initargs))


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
    init_args = (os.getpid(), initializer, initargs)
    with ctx.Pool(workers, initializer=_worker_start, initargs=init_args) as pool:
        run = pool.imap if ordered else pool.imap_unordered
        yield from run(fn, tasks, chunksize)
