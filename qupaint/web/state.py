"""What every route of the web app shares: the database, the map folder and the upload
limit (:class:`AppState`), and the FastAPI dependencies that hand them to a route."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

__all__ = ["AppState", "app_state", "check_token", "read_token_file", "store"]

#: the shortest token accepted
MIN_TOKEN_CHARS = 8


def check_token(token: str) -> str:
    """``token`` when it can serve as one (at least 8 printable ASCII characters, no space:
    it travels in a header, a cookie and a URL), else a ValueError naming the fix.

    >>> check_token("s3cret-lab-token")
    's3cret-lab-token'
    """
    if len(token) < MIN_TOKEN_CHARS or not all(33 <= ord(c) < 127 for c in token):
        raise ValueError(f"token: use at least {MIN_TOKEN_CHARS} printable ASCII characters "
                         "without spaces (qupaint.web.new_token() makes one)")  # fmt: skip
    return token


def read_token_file(path: Path) -> str:
    """The token on the first line of ``path`` (:func:`check_token`); ValueError when the
    file is empty or the line is no token, OSError when it cannot be read."""
    lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"token_file: {path} holds no token on its first line")
    return check_token(lines[0].strip())


@dataclass
class AppState:
    """One app's settings and its database.

    Attributes
    ----------
    db : str or path
        The flake database (a SQLite path or a SQLAlchemy URL).
    Session : sessionmaker
        Sessions on it (:func:`qupaint.scan.db.open_db`).
    map_dir : Path or None
        A ``qupaint map --dzi`` folder, served under ``/map``.
    max_upload_mb : float
        The largest upload accepted, MB.
    token : str or None
        The token every request needs, when set.
    token_file : Path or None
        A file holding the token instead (first line): read again whenever it changes, so
        that writing a new token into it rotates the token without a restart
        (:meth:`current_token`).
    hosts : frozenset of str
        The host names answered without a token (loopback and the served address).
    workers, time_limit_s : int, float
        Worker processes for the detection of uploads, and the most seconds one upload's
        work may take (then 503, and its worker is replaced).
    """

    db: Any
    Session: Any
    map_dir: Path | None
    max_upload_mb: float
    token: str | None = None
    hosts: frozenset = frozenset()
    #: detection on uploads: worker processes, and the seconds one request may take
    workers: int = 1
    time_limit_s: float = 60.0
    token_file: Path | None = None
    _pool: Any = field(default=None, repr=False)
    _token_stamp: Any = field(default=None, repr=False)
    #: the model's contrast per layer of each chip (``/api/flakes/{id}``), computed once
    ladders: dict = field(default_factory=dict, repr=False)

    def current_token(self) -> str | None:
        """The token requests must carry now: :attr:`token_file`'s, read again when the
        file's size or time stamp changed; while the file is missing or empty (in the middle
        of being replaced) the last token read stays in force, so access never opens up."""
        if self.token_file is None:
            return self.token
        try:
            st = self.token_file.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._token_stamp:
                self.token, self._token_stamp = read_token_file(self.token_file), stamp
        except (OSError, ValueError):  # missing, half written or unfit: the last one holds
            pass
        return self.token

    @property
    def upload_limit(self) -> int:
        """The largest upload accepted, bytes."""
        return int(self.max_upload_mb * 2**20)

    def run(self, fn: Callable, tries: int = 5):
        """``fn(session)`` in one transaction; a locked database is retried, never shown (a
        503 when it stays locked)."""
        from sqlalchemy.exc import OperationalError

        for k in range(tries):
            try:
                with self.Session.begin() as s:
                    return fn(s)
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or k == tries - 1:
                    raise HTTPException(503, "the database is busy; try again") from None
                time.sleep(0.05 * (k + 1))

    def pool(self):
        """The upload workers (:func:`qupaint._pool.watched_pool`), started on first use."""
        from qupaint._pool import watched_pool

        if self._pool is None:
            self._pool = watched_pool(self.workers)
        return self._pool

    def warm(self) -> None:
        """Start the upload workers and have them import what detection needs (some 2 s,
        which the first upload paid), while the server is idle."""
        for _ in range(self.workers):
            self.pool().submit(_warm_worker)

    async def compute(self, fn: Callable, *args):
        """``fn(*args)`` in a worker process, awaited: the server keeps answering other
        requests meanwhile. Longer than :attr:`time_limit_s`: a 503, and the workers are
        stopped and replaced (a process cannot be cancelled otherwise)."""
        import asyncio

        fut = self.pool().submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.time_limit_s)
        except asyncio.TimeoutError:
            self.close_pool()
            raise HTTPException(503, f"the image took longer than {self.time_limit_s:g} s to "
                                     "process; try a smaller one") from None  # fmt: skip

    def close_pool(self) -> None:
        """Stop the upload workers now (a request over its time, or the server stopping)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)


def app_state(request: Request) -> AppState:
    """The dependency that gives a route its app's :class:`AppState`."""
    return request.app.state.qupaint


def store(request: Request) -> Callable:
    """The session dependency: a function that runs ``fn(session)`` in one retried
    transaction (:meth:`AppState.run`)."""
    return request.app.state.qupaint.run


def _warm_worker() -> None:
    """Imported once per upload worker, ahead of the first upload."""
    from PIL import ImageFont

    import qupaint.detect
    import qupaint.detect.draw  # noqa: F401

    ImageFont.load_default(size=20)
