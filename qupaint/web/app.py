"""``qupaint serve``: the flake database in the browser (FastAPI).

Pages (plain HTML and JavaScript shipped in ``qupaint/web/static``; no Node build):
``/`` the chip map (the scan's deep-zoom pyramid in OpenSeadragon, flake markers),
``/flakes`` the filterable, paged table, ``/flake/{id}`` one flake (outlined crop, readings,
measured contrast beside the model's per layer, used / favourite / note saved at once),
``/try`` (detect on an uploaded micrograph) and ``/calibrate`` (click flakes of known
layer number on an uploaded image, get a camera JSON).

JSON API under ``/api`` (OpenAPI docs at ``/docs``): ``GET /api/flakes`` (the filters of
``qupaint flakes``, paged), ``GET``/``PATCH /api/flakes/{id}``, ``GET /api/flakes/{id}/image.png``,
``POST /api/detect``, ``POST /api/calibrate``, ``GET /api/export``, ``GET /api/map``.

One router per concern in :mod:`qupaint.web.routes` (``pages``, ``flakes``, ``chipmap``,
``uploads``, ``exports``); what they share, the database with its retried transactions, the
map folder and the upload limit, reaches them as FastAPI dependencies
(:mod:`qupaint.web.state`). This module assembles the app and guards every request.

Security: a token (``Authorization: Bearer``, a ``qupaint_token`` cookie, or ``?token=``
once, which sets the cookie) when one is configured (``token``, or ``token_file``, read
again when it changes), 401 without it; without a token, only
requests addressed to loopback names or the served address (403: DNS rebinding); uploads
are limited in size and shape (413) and must decode as an image (415); unsafe methods from
another origin are refused (403); paths are served by Starlette's static files, which refuse
anything outside their folder; every response carries a Content-Security-Policy
(:data:`CSP`) under which only the package's own script files run.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from qupaint.web.routes import chipmap, exports, flakes, pages, uploads
from qupaint.web.state import AppState, check_token, read_token_file

__all__ = ["CSP", "LOCAL_HOSTS", "create_app", "host_name", "new_token"]

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: the Content-Security-Policy of every response: scripts from this origin only (no inline
#: script, no eval), nothing framed, no plugin, forms and fetches to this origin. Inline
#: styles stay allowed: Swagger UI inserts ``<style>`` elements, and a style cannot
#: run code. ``data:``/``blob:`` images are the upload's overlay and the clicked micrograph.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # fmt: skip
#: hosts that need no token: the app is reachable from this machine only
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(header: str) -> str:
    """The host name of a ``Host`` header (no port, no IPv6 brackets, lower case).

    >>> host_name("127.0.0.1:8765"), host_name("[::1]:80"), host_name("LocalHost")
    ('127.0.0.1', '::1', 'localhost')
    """
    h = header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h[1:]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def new_token() -> str:
    return secrets.token_urlsafe(18)


def create_app(db, map_dir: str | Path | None = None, token: str | None = None,
               max_upload_mb: float = 25.0, hosts=(), workers: int = 1,
               time_limit_s: float = 60.0,
               token_file: str | Path | None = None) -> FastAPI:  # fmt: skip
    """The web app on database ``db`` (path or URL). ``map_dir``: a ``qupaint map --dzi``
    folder (default: ``map/`` beside a SQLite database, when there). ``token``: required on
    every request when given; ``token_file``: a file holding it (first line), read again
    when it changes, so that a new token written into it takes over without a restart (the
    token then never appears on a command line). Without a token, only requests addressed to
    this machine's loopback names (:data:`~qupaint.web.LOCAL_HOSTS`) or to ``hosts`` (the
    address it serves on) are answered: a page on another site whose name an attacker points
    at 127.0.0.1 (DNS rebinding) sends its own name as ``Host`` and is refused. Uploads are
    decoded and detected in ``workers`` processes, each within ``time_limit_s`` seconds (503
    after), so that the server keeps answering meanwhile."""
    import contextlib

    if workers < 1 or not time_limit_s > 0:
        raise ValueError("workers must be >= 1 and time_limit_s > 0")
    from qupaint.scan.db import open_db

    Session = open_db(db)
    if map_dir is None and "://" not in str(db):
        guess = Path(db).parent / "map"
        map_dir = guess if (guess / "layout.json").is_file() else None
    map_dir = Path(map_dir) if map_dir else None
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token is not None:
        check_token(token)
    if token_file is not None:
        token_file = Path(token_file)
        if not token_file.is_file():
            raise ValueError(f"token_file: {token_file} does not exist; write a token into it "
                             "(qupaint.web.new_token())")  # fmt: skip
        read_token_file(token_file)  # the first token must be fit: later ones only replace it
    state = AppState(db, Session, map_dir, max_upload_mb, token,
                     frozenset(h.lower().strip("[]") for h in (*LOCAL_HOSTS, *hosts)),
                     int(workers), float(time_limit_s), token_file)  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        state.warm()  # the workers import detection now, not on the first upload
        try:
            yield
        finally:  # the server stops (SIGTERM included): its upload workers with it
            state.close_pool()

    # the API docs' assets (Swagger UI) come from a package (fastapi-offline), not a
    # CDN: a lab PC without internet gets them too. Their pages are ours (routes.pages),
    # started from script files: fastapi's pages hold an inline script, which CSP refuses
    app = FastAPIOffline(title="qupaint", version="1", description=__doc__.split("\n\n")[0],
                         lifespan=lifespan, static_url="/docs-assets", docs_url=None,
                         redoc_url=None)  # fmt: skip
    app.state.Session = Session
    app.state.qupaint = state
    app.middleware("http")(_guard(state))
    # bodies are counted as they arrive (a chunked one has no Content-Length to check)
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=state.upload_limit + 65536)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    if map_dir is not None and map_dir.is_dir():
        app.mount("/map", StaticFiles(directory=map_dir), name="map")
    for module in (flakes, chipmap, uploads, exports):
        app.include_router(module.router)
    return app


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    """A 422 naming what was wrong, written as ASCII JSON, the input it echoes cut to 200
    characters: the default handler echoed a 200 MB body, and could not encode one holding
    a lone surrogate (invalid Unicode; a 500)."""
    import json

    errors = []
    for e in exc.errors():
        e = dict(e)
        if isinstance(e.get("input"), str | bytes) and len(e["input"]) > 200:
            e["input"] = e["input"][:200]
        errors.append(e)
    body = json.dumps({"detail": errors}, ensure_ascii=True, default=str)
    return Response(body, status_code=422, media_type="application/json")


def _same(given: str, token: str) -> bool:
    """The token compared in constant time (any text, a non-ASCII one included)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _guard(state: AppState):
    """The middleware every request passes: without a token, a ``Host`` the app serves
    under (403 else: DNS rebinding); the token when one is set (401 without it), unsafe
    methods only from the app's own origin (403) (the body size is counted by Starlette's
    RequestBodyLimitMiddleware, 413), and a
    ``Server-Timing`` header on every response."""

    async def guard(request: Request, call_next):
        t0 = time.perf_counter()
        token = state.current_token()  # a token file's new token takes over at once
        set_cookie = False
        if token is None and host_name(request.headers.get("host", "")) not in state.hosts:
            return JSONResponse({"detail": "this address is not served without a token "
                                 "(qupaint serve --host, or --token)"},
                                status_code=403)  # fmt: skip
        if token is not None:
            given = request.headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else None
            link = request.query_params.get("token")
            if given is None and link and _same(link, token):
                # the printed link wins over a cookie left by an earlier run's token
                given, set_cookie = link, True
            given = given or request.cookies.get("qupaint_token")
            if given is None and link:
                given = link
            if given is None or not _same(given, token):
                return JSONResponse({"detail": "a token is required (see qupaint serve)"},
                                    status_code=401)  # fmt: skip
        if request.method in UNSAFE:
            origin = request.headers.get("origin")
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin is not None and origin != own:
                return JSONResponse({"detail": f"cross-origin {request.method} refused"},
                                    status_code=403)  # fmt: skip
        response = await call_next(request)
        ms = (time.perf_counter() - t0) * 1000.0
        response.headers["Server-Timing"] = f"app;dur={ms:.1f}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"  # no framing (clickjacking)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"  # a ?token= link is not passed on
        if set_cookie:
            response.set_cookie("qupaint_token", token, httponly=True, samesite="strict")
            response.headers["Cache-Control"] = "no-store"
        return response

    return guard
