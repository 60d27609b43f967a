"""The HTML pages (plain HTML and JavaScript shipped in ``qupaint/web/static``). Every
page's script is a file under ``/static``, none inline: the app's Content-Security-Policy
(:data:`qupaint.web.app.CSP`) allows scripts from its own origin only."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

__all__ = ["PAGES", "STATIC", "router"]

STATIC = Path(__file__).resolve().parents[1] / "static"
#: route -> page; ``/docs`` is the API docs (Swagger UI) from the package's copy of its
#: assets (``fastapi-offline``, mounted at ``/docs-assets``). There is no ``/redoc``: ReDoc
#: loads its logo from its CDN, which a lab PC without internet cannot reach.
PAGES = {"/": "map.html", "/flakes": "flakes.html", "/try": "try.html",
         "/calibrate": "calibrate.html", "/docs": "docs.html"}  # fmt: skip

router = APIRouter(include_in_schema=False)


def _page(name: str):
    def serve_page():
        return FileResponse(STATIC / name, media_type="text/html")

    return serve_page


for _route, _name in PAGES.items():
    router.add_api_route(_route, _page(_name))


@router.get("/flake/{flake_id}")
def flake_page_html(flake_id: int = PathParam(ge=1, le=2**63 - 1)):
    return FileResponse(STATIC / "flake.html", media_type="text/html")
