"""``qupaint serve`` against hostile requests (loopback only, FastAPI TestClient): each test
here failed on the app before its fix."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from qupaint.web import create_app  # noqa: E402


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "flakes.sqlite"


def test_dns_rebinding_is_refused_without_a_token(db):
    """With no token (the default on 127.0.0.1) nothing checked ``Host``, and the Origin
    check compared Origin with Host: a page at attacker.example, its name pointed at
    127.0.0.1, read /api/flakes and /api/export and stored a PATCH. Only this machine's
    names, and the address served on, are answered now."""
    app = create_app(db)
    evil = TestClient(app, base_url="http://attacker.example:8765")
    for path in ("/api/flakes", "/api/export?format=csv", "/"):
        r = evil.get(path)
        assert r.status_code == 403 and "token" in r.json()["detail"], path
    r = evil.patch("/api/flakes/1", json={"note": "x"},
                   headers={"Origin": "http://attacker.example:8765"})  # fmt: skip
    assert r.status_code == 403
    for base in ("http://127.0.0.1:8765", "http://localhost", "http://[::1]:8765"):
        assert TestClient(app, base_url=base).get("/api/flakes").status_code == 200, base
    # the address given to qupaint serve --host is served
    lan = TestClient(create_app(db, hosts=("192.168.1.20",)), base_url="http://192.168.1.20:80")
    assert lan.get("/api/flakes").status_code == 200
    # with a token, the token guards every name
    tok = TestClient(create_app(db, token="s3cret-token"), base_url="http://attacker.example")
    assert tok.get("/api/flakes").status_code == 401
    bearer = {"Authorization": "Bearer s3cret-token"}
    assert tok.get("/api/flakes", headers=bearer).status_code == 200


def test_a_foreign_or_null_origin_cannot_write(db):
    c = TestClient(create_app(db), base_url="http://127.0.0.1:8765")
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999"):
        r = c.patch("/api/flakes/1", json={"note": "x"}, headers={"Origin": origin})
        assert r.status_code == 403, origin


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 8-bit greyscale pixels, with one tiny
    compressed row: a few hundred bytes that decode to gigabytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))  # fmt: skip


@pytest.mark.parametrize("shape", [(59_000_000, 1), (50_000, 50_000), (30_000, 1_000)])
def test_pixel_bombs_are_refused_from_the_header(db, shape):
    """A 57 KB PNG of 59,000,000 x 1 px passed the 60-megapixel cap and grew the server to
    14 GB. The shape (sides, aspect ratio, pixels) is checked before decoding: 413 at once."""
    import time

    c = TestClient(create_app(db), base_url="http://127.0.0.1")
    t0 = time.perf_counter()
    for path, form in (
        ("/api/detect", {"material": "graphene"}),
        ("/api/calibrate", {"material": "graphene", "points": '[{"x": 1, "y": 0, "layers": 1}]'}),
    ):
        r = c.post(
            path, data=form, files={"file": ("bomb.png", _png_header_only(*shape), "image/png")}
        )
        assert r.status_code == 413, (path, r.status_code, r.text)
        assert "px" in r.json()["detail"] or "pixels" in r.json()["detail"]
    assert time.perf_counter() - t0 < 2.0


def test_a_bomb_file_is_skipped_by_a_batch_detect(tmp_path):
    """``qupaint detect`` over a folder with one bomb file printed a 90-line traceback and
    left partial folders and no summary; the bomb is now skipped and reported."""
    import json

    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from qupaint.cli import app

    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((120, 160, 3), 150, np.uint8)).save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bomb.png").write_bytes(_png_header_only(59_000_000, 1))
    res = CliRunner().invoke(app, ["detect", str(tmp_path / "in"), "--material", "graphene",
                                   "--out", str(tmp_path / "out"), "--workers", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "bomb.png" in res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["done"] == 1 and [f["image"] for f in summary["failed"]] == [
        str(tmp_path / "in" / "bomb.png")]  # fmt: skip


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A small virtual chip scanned into a database with a few flakes."""
    from conftest import render_small_chip

    from qupaint.scan import scan_folder

    root = tmp_path_factory.mktemp("site")
    render_small_chip(root / "chip", (2, 2), (320, 200), seed=5, flakes_per_mm2=600.0)
    db = root / "flakes.sqlite"
    scan_folder(root / "chip", db, "graphene", workers=1)
    return db


def test_out_of_range_numbers_and_bad_text_get_a_422_not_a_500(scanned):
    """Ids and pages beyond 2^63 gave a 500, a note with a lone surrogate a 500, and
    ``layers=,,,`` silently 0 rows."""
    c = TestClient(create_app(scanned), base_url="http://127.0.0.1", raise_server_exceptions=False)
    big = "99999999999999999999999"
    for r in (c.get(f"/api/flakes/{big}"), c.get(f"/api/flakes/{big}/image.png"),
              c.patch(f"/api/flakes/{big}", json={"note": "x"}), c.get(f"/flake/{big}"),
              c.get("/api/flakes", params={"page": 10**12}),
              c.get("/api/flakes", params={"layers": ",,,"}),
              c.get("/api/flakes", params={"layers": "1,x"})):  # fmt: skip
        assert r.status_code == 422, (str(r.request.url), r.status_code, r.text[:300])
    fid = c.get("/api/flakes").json()["rows"][0]["id"]
    r = c.patch(f"/api/flakes/{fid}", content=b'{"note": "\\ud800 lone"}',
                headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and "unicode" in r.text
    assert c.get("/api/flakes", params={"layers": "1, 2"}).status_code == 200


def test_a_note_that_starts_a_formula_is_exported_as_text(scanned):
    """Notes starting with =, +, - or @ were exported verbatim: a spreadsheet ran them."""
    import csv
    import io

    c = TestClient(create_app(scanned), base_url="http://127.0.0.1")
    fid = c.get("/api/flakes").json()["rows"][0]["id"]
    evil = '=HYPERLINK("http://evil.example","x")'
    assert c.patch(f"/api/flakes/{fid}", json={"note": evil}).status_code == 200
    rows = list(csv.DictReader(io.StringIO(c.get("/api/export", params={"format": "csv"}).text)))
    note = next(r["note"] for r in rows if int(r["id"]) == fid)
    assert note == "'" + evil
    assert all(not r["note"].startswith(("=", "+", "-", "@")) for r in rows)
    assert c.get(f"/api/flakes/{fid}").json()["note"] == evil  # stored as written


def test_headers_and_a_fresh_token_link_over_a_stale_cookie(db):
    c = TestClient(create_app(db), base_url="http://127.0.0.1")
    r = c.get("/api/flakes")
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
    # a restart with a new token: the printed link works although the old cookie is still set
    t = TestClient(create_app(db, token="new-token-123"), base_url="http://127.0.0.1",
                   cookies={"qupaint_token": "old-token-456"})  # fmt: skip
    r = t.get("/api/flakes", params={"token": "new-token-123"})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert "new-token-123" in r.headers["set-cookie"]
    fresh = TestClient(create_app(db, token="new-token-123"), base_url="http://127.0.0.1")
    assert fresh.get("/api/flakes", params={"token": "wrong"}).status_code == 401


def test_token_file_rotates_without_a_restart(db, tmp_path):
    """The token could only be given on the command line (visible to every user in ``ps``)
    and not changed without a restart. ``token_file``: read again when it changes; the old
    token stops working at once, a missing file keeps the last token (never open)."""
    f = tmp_path / "token"
    f.write_text("first-token-1234\n")
    c = TestClient(create_app(db, token_file=f), base_url="http://127.0.0.1")
    auth = {"Authorization": "Bearer first-token-1234"}
    assert c.get("/api/flakes", headers=auth).status_code == 200
    assert c.get("/api/flakes").status_code == 401
    tmp = tmp_path / "token.new"  # rotated as an editor or a script would: write, rename
    tmp.write_text("second-token-5678-longer\n")
    tmp.replace(f)
    assert c.get("/api/flakes", headers=auth).status_code == 401
    new = {"Authorization": "Bearer second-token-5678-longer"}
    assert c.get("/api/flakes", headers=new).status_code == 200
    f.unlink()  # in the middle of a replacement: the last token stays in force
    assert c.get("/api/flakes").status_code == 401
    assert c.get("/api/flakes", headers=new).status_code == 200
    f.write_text("bad")  # no token: refused, the last one stays in force (no 500)
    assert c.get("/api/flakes").status_code == 401
    assert c.get("/api/flakes", headers=new).status_code == 200
    for bad, match in (("short", "at least 8"), ("with a space in it", "without spaces")):
        f.write_text(bad)
        with pytest.raises(ValueError, match=match):
            create_app(db, token_file=f)
    with pytest.raises(ValueError, match="does not exist"):
        create_app(db, token_file=tmp_path / "missing")
    with pytest.raises(ValueError, match="not both"):
        create_app(db, token="first-token-1234", token_file=tmp)


def test_csp_without_inline_script_on_every_page(db):
    """No Content-Security-Policy was sent, and every page ran inline script: an injected
    ``<script>`` would have run. Now every response carries a policy that allows scripts
    from the app's own origin only, and no page holds an inline script or handler."""
    import re

    from qupaint.web.app import CSP
    from qupaint.web.routes.pages import PAGES

    c = TestClient(create_app(db), base_url="http://127.0.0.1")
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    for route in [*PAGES, "/flake/1"]:
        r = c.get(route)
        assert r.status_code == 200 and r.headers["Content-Security-Policy"] == CSP, route
        html = r.text
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
        assert not re.search(r"\son[a-z]+\s*=", html), route  # no inline handler
        assert "style=" not in html and "javascript:" not in html, route
        for src in re.findall(r'<script src="([^"]+)"', html):
            asset = c.get(src)
            assert asset.status_code == 200, src
            assert asset.headers["Content-Security-Policy"] == CSP
    assert c.get("/api/flakes").headers["Content-Security-Policy"] == CSP


def test_16_bit_and_degenerate_images(db, tmp_path):
    """16-bit images gave 0 detections (PIL's conversion clips them to white);
    /api/calibrate "fitted" a camera to a 1x1 or one-colour image."""
    import io

    import numpy as np
    from PIL import Image

    from qupaint._io import read_rgb

    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    got = read_rgb(tmp_path / "deep.png")
    assert got.dtype == np.uint8 and got.shape == (64, 64, 3)
    assert 0 < got.mean() < 255 and got.max() > 200  # scaled, not clipped to white
    c = TestClient(create_app(db), base_url="http://127.0.0.1")
    for img in (np.zeros((1, 1, 3), np.uint8), np.full((200, 300, 3), 128, np.uint8)):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        r = c.post("/api/calibrate", data={"material": "graphene",
                                           "points": '[{"x": 0, "y": 0, "layers": 1}]'},
                   files={"file": ("x.png", buf.getvalue(), "image/png")})  # fmt: skip
        assert r.status_code == 422 and "cannot be fitted" in r.text, r.text


def _jpeg(h: int, w: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    img = np.clip(rng.normal((150, 120, 160), 4, (h, w, 3)), 0, 255).astype(np.uint8)
    img[100:160, 200:300] = (110, 95, 150)  # a flake
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_uploads_run_in_workers_within_a_time_limit_and_the_server_keeps_answering(db):
    """``detect_upload`` ran the detector inline in the event loop: a 1920x1200 frame
    stalled every request for 1.8 s, a 55 MP JPEG for 13 minutes (SIGTERM ignored). Uploads
    now run in worker processes, within a time limit."""
    import threading
    import time

    frame = _jpeg(1200, 1920)
    form = {"material": "graphene"}
    with TestClient(create_app(db, time_limit_s=0.05), base_url="http://127.0.0.1") as c:
        r = c.post("/api/detect", data=form, files={"file": ("f.jpg", frame, "image/jpeg")})
        assert r.status_code == 503 and "longer than" in r.json()["detail"]
        c.app.state.qupaint.time_limit_s = 120.0  # the workers were replaced: work again
        got: dict = {}

        def upload():
            got["r"] = c.post("/api/detect", data=form,
                              files={"file": ("f.jpg", frame, "image/jpeg")})  # fmt: skip

        t = threading.Thread(target=upload)
        t.start()
        waits = []
        while t.is_alive():
            t0 = time.perf_counter()
            assert c.get("/api/health").status_code == 200
            waits.append(time.perf_counter() - t0)
            time.sleep(0.05)
        t.join()
        assert got["r"].status_code == 200 and got["r"].json()["width"] == 1920
        res = got["r"].json()  # rows numbered as the outlines, thin-flake candidates first
        dets = res["detections"]
        assert [d["number"] for d in dets] == list(range(1, len(dets) + 1))
        assert [d["layers"] >= 6 for d in dets] == sorted(d["layers"] >= 6 for d in dets)
        assert all(d["class"] in ("Mono", "Few", "Thick") for d in dets)
        assert res["summary"].startswith(f"{len(dets)} flakes: {res['counts']['thin']} thin")
        assert len(waits) >= 3 and max(waits) < 0.5, waits  # answered while detecting


def test_chunked_bodies_are_counted_as_they_arrive(db):
    """Without Content-Length a 300 MB upload was spooled in full before the 413, and a
    chunked 200 MB PATCH was held in memory and echoed back in the 422."""
    c = TestClient(create_app(db, max_upload_mb=1), base_url="http://127.0.0.1")

    def chunks(n, size=65536):
        for _ in range(n):
            yield b"x" * size

    r = c.patch("/api/flakes/1", content=chunks(40), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 1000
    # under the limit, a long wrong value is not echoed back whole
    r = c.patch("/api/flakes/1", json={"note": 5, "used": "x" * 500_000})
    assert r.status_code == 422 and len(r.content) < 5000
    r = c.post("/api/detect", content=chunks(40),
               headers={"Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert r.status_code == 413 and len(r.content) < 1000


def test_a_failed_export_leaves_no_temporary_folder(db, monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    c = TestClient(create_app(db), base_url="http://127.0.0.1", raise_server_exceptions=False)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("qupaint.scan.export.export", broken)
    assert c.get("/api/export", params={"format": "csv"}).status_code == 500
    assert not list(tmp_path.glob("qupaint-export-*"))


def test_serve_stops_on_sigterm_while_an_upload_is_detected(db, tmp_path):
    """A 55 MP JPEG ran for 13 minutes with SIGTERM ignored: the detector ran in the event
    loop. It now runs in a worker; SIGTERM stops the server and its workers at once."""
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time
    import urllib.request

    create_app(db)  # the schema
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    cmd = [
        sys.executable,
        "-c",
        "from qupaint.cli import app; app()",
        "serve",
        "--db",
        str(db),
        "--port",
        str(port),
    ]
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        body = _jpeg(3000, 4000)
        boundary = "qupaintboundary"
        payload = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="material"\r\n\r\n'
            f'graphene\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        payload += body + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            base + "/api/detect",
            data=payload,
            method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        threading.Thread(target=lambda: _ignore(urllib.request.urlopen, req, 60),
                         daemon=True).start()  # fmt: skip
        time.sleep(1.0)  # the upload is being detected
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=20)
        assert time.monotonic() - t0 < 15
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def _ignore(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass


def test_api_docs_are_served_from_the_package(db):
    """/docs loaded Swagger UI from a CDN: blank on a lab PC without internet."""
    c = TestClient(create_app(db), base_url="http://127.0.0.1")
    html = c.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = c.get(f"/docs-assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000
    assert c.get("/redoc").status_code == 404  # ReDoc fetched its logo from a CDN
    assert c.get("/openapi.json").json()["info"]["title"] == "qupaint"
