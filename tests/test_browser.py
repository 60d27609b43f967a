"""``qupaint serve`` in a real browser: Debian's Chromium driven by Playwright, against a
server on 127.0.0.1 holding a virtual chip's database. Screenshots go to
``build/test-artifacts/browser/``. Skipped where Chromium or Playwright is missing (`.ci/run`
installs both)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from qupaint.scan import scan_folder
from qupaint.scan.export import query_flakes
from qupaint.scan.stitch import stitch
from qupaint.synthia.chip import ChipConfig, render_chip

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _wait_until(page, expression: str, timeout_s: float = 30.0) -> None:
    """Poll ``expression`` in the page until truthy. Playwright's ``wait_for_function``
    evaluates its predicate with ``eval``, which the app's CSP (rightly) refuses;
    ``page.evaluate`` goes through DevTools and is not subject to it."""
    stop = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > stop:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(50)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import os

    required = os.environ.get("QUPAINT_REQUIRE_BROWSER") == "1"  # .ci/run: never skip
    if CHROMIUM is None:
        if required:
            pytest.fail("QUPAINT_REQUIRE_BROWSER=1 but no Chromium is installed")
        pytest.skip("no Chromium (Debian package chromium; .ci/run installs it)")
    if required:
        import playwright.sync_api  # noqa: F401 - an ImportError fails the test here
    pytest.importorskip("playwright.sync_api")
    import uvicorn

    from qupaint.web import create_app

    root = tmp_path_factory.mktemp("served")
    cfg = ChipConfig(tiles=(3, 3), tile_px=(640, 400), flakes_per_mm2=250.0, seed=8)
    render_chip(root / "chip", cfg, workers=1)
    db = root / "flakes.sqlite"
    scan_folder(root / "chip", db, "graphene", workers=1)
    stitch(db, root / "map", dzi=True)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=port,
                                        log_level="warning"))  # fmt: skip
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", db, root
    srv.should_exit = True
    th.join(timeout=10)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        yield pg
        browser.close()


@pytest.fixture(autouse=True)
def no_csp_violation(page):
    """Every page runs under the app's Content-Security-Policy (no inline script): Chromium
    reports what the policy refused on the console, and no test may see one."""
    seen: list[str] = []

    def on_console(msg):
        seen.append(msg.text)

    page.on("console", on_console)
    yield
    page.remove_listener("console", on_console)
    refused = [t for t in seen if "Content Security Policy" in t or t.startswith("Refused to")]
    assert not refused, refused


def test_map_loads_with_flake_markers(server, page):
    url, _, _ = server
    page.goto(url + "/")
    page.wait_for_selector("body[data-map-ready='1']", timeout=30000)
    markers = page.locator(".marker")
    assert markers.count() > 5
    assert markers.first.inner_text().endswith("L")  # each marker names its layers
    # a scale bar in um that follows the zoom
    bar = page.locator("#scalebar")
    assert bar.inner_text().endswith(("µm", "mm"))
    um = float(bar.get_attribute("data-um"))
    page.mouse.wheel(0, -600)  # zoom in over the viewer
    page.wait_for_timeout(800)
    assert float(bar.get_attribute("data-um")) <= um
    page.wait_for_timeout(1500)  # tiles
    page.screenshot(path=str(ARTIFACTS / "map.png"))
    # a marker opens its flake
    first = markers.first
    fid = first.get_attribute("id").split("-")[1]
    first.click(force=True)
    page.wait_for_url(f"**/flake/{fid}", timeout=15000)


def test_filter_monolayers_over_100um2(server, page):
    url, db, _ = server
    page.goto(url + "/flakes")
    page.wait_for_selector("body[data-loaded]")
    page.fill("input[name=layers]", "1")
    page.fill("input[name=min_area_um2]", "100")
    before = page.get_attribute("body", "data-loaded")
    page.click("#apply")
    _wait_until(page, f"document.body.dataset.loaded !== '{before}'")
    total = int(page.get_attribute("#count", "data-total"))
    assert total == len(query_flakes(db, layers=[1], min_area_um2=100)) > 0
    rows = page.locator("#table tbody tr")
    assert rows.count() == min(total, 50)
    layers = page.locator("#table tbody tr td:nth-child(3)").all_inner_texts()
    assert set(layers) == {"1"}
    page.screenshot(path=str(ARTIFACTS / "flakes.png"), full_page=True)


def test_mark_favourite_survives_a_reload(server, page):
    url, db, _ = server
    fid = query_flakes(db, thin_only=True, sort="area", limit=1)[0]["id"]
    page.goto(f"{url}/flake/{fid}")
    page.wait_for_selector("body[data-loaded='1']")
    assert not page.is_checked("#favourite")
    page.check("#favourite")
    page.wait_for_selector("#saved:has-text('saved')")
    page.fill("#note", "for the twisted bilayer")
    page.locator("#note").blur()
    page.wait_for_selector("#saved:has-text('saved')")
    page.reload()
    page.wait_for_selector("body[data-loaded='1']")
    assert page.is_checked("#favourite")
    assert page.input_value("#note") == "for the twisted bilayer"
    assert query_flakes(db, favourite=True)[0]["id"] == fid
    page.screenshot(path=str(ARTIFACTS / "flake.png"), full_page=True)


def test_upload_an_image_and_see_detections(server, page):
    url, _, root = server
    page.goto(url + "/try")
    page.set_input_files("#file", str(root / "chip" / "tiles" / "tile_0004.jpg"))
    page.click("#run")
    page.wait_for_selector("#summary[data-count]", timeout=60000)
    assert int(page.get_attribute("#summary", "data-count")) > 0
    assert page.get_attribute("#overlay", "src").startswith("data:image/jpeg;base64,")
    assert page.locator("#dets tr").count() > 1
    # the rows are numbered as the outlines are, 1..n, and name their class
    numbers = page.locator("#dets tr td:nth-child(1)").all_inner_texts()
    assert numbers == [str(k) for k in range(1, len(numbers) + 1)]
    assert all(c for c in page.locator("#dets tr td:nth-child(2)").all_inner_texts())
    page.screenshot(path=str(ARTIFACTS / "try.png"), full_page=True)


def test_calibrate_marks_the_clicks_and_shows_the_fit(server, page):
    """/calibrate showed no mark where one clicked and answered with a raw JSON dump; the
    clicks are marked, and the fit is shown (oxide, residual, measured beside fitted), with
    the JSON as a download."""
    import sqlalchemy as sa

    from qupaint.scan.db import Flake, Image, open_db

    url, db, root = server
    with open_db(db)() as s:  # a monolayer and a bilayer on one frame, seen once
        rows = s.execute(sa.select(Flake, Image).join(Image, Flake.image_id == Image.id)
                         .where(Flake.layers <= 2, Flake.views == 1,
                                Flake.area_um2 > 60)).all()  # fmt: skip
    by_frame: dict = {}
    for f, im in rows:
        by_frame.setdefault(im.file, {})[f.layers] = (f, im)
    frame = next(k for k, v in sorted(by_frame.items()) if len(v) == 2)
    page.goto(url + "/calibrate")
    page.set_input_files("#file", str(root / "chip" / frame))
    _wait_until(page, "document.querySelector('#calimg').naturalWidth > 0")
    box = page.locator("#calimg").bounding_box()
    for layers in (1, 2):
        f, im = by_frame[frame][layers]
        x = (f.x_mm - im.x_mm) * 1000 / 0.385 + im.width / 2
        y = (f.y_mm - im.y_mm) * 1000 / 0.385 + im.height / 2
        page.fill("#layers", str(layers))
        page.mouse.click(box["x"] + x * box["width"] / im.width,
                         box["y"] + y * box["height"] / im.height)  # fmt: skip
    assert page.locator(".click").count() == 2
    page.click("#fit")
    page.wait_for_selector("#result[data-oxide]", timeout=60000)
    text = page.inner_text("#result")
    assert "SiO" in text and "rms" in text and "±" in text  # the oxide with its uncertainty
    plot = page.locator("#ladderplot")  # the ladder plot, drawn
    assert plot.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.querySelector('#ladderplot').naturalWidth") > 100
    assert not page.locator("#download").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "calibrate.png"), full_page=True)


def test_api_docs_render_without_internet(server, page):
    """Swagger UI renders from the package: no request leaves 127.0.0.1."""
    url, _, _ = server
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30000)
    assert page.locator(".opblock").count() > 5
    page.wait_for_timeout(500)
    outside = [u for u in requests if not u.startswith((url, "data:", "blob:"))]
    assert not outside, outside
    assert any("/docs-assets/swagger-ui-bundle.js" in u for u in requests)
