"""``qupaint serve``: the JSON API, the pages, security and robustness (FastAPI TestClient);
the real-browser test is tests/test_browser.py."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from qupaint.scan import scan_folder
from qupaint.scan.db import Flake, open_db
from qupaint.scan.export import query_flakes
from qupaint.scan.stitch import stitch
from qupaint.synthia.chip import ChipConfig, render_chip
from qupaint.web import create_app

SMALL = dict(tiles=(3, 2), tile_px=(480, 300), flakes_per_mm2=400.0, seed=4,
             size_um=(14.0, 0.4), max_side_um=40.0)  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    render_chip(root / "chip", ChipConfig(**SMALL), workers=1)
    db = root / "flakes.sqlite"
    scan_folder(root / "chip", db, "graphene", workers=1)
    stitch(db, root / "map", dzi=True)
    return root, db


@pytest.fixture()
def client(site):
    _, db = site
    return TestClient(create_app(db), base_url="http://127.0.0.1")


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_flake_list_filters_page_and_sort_like_the_database(client, site):
    _, db = site
    r = client.get("/api/flakes", params={"layers": "1", "min_area_um2": 30, "sort": "area",
                                          "page_size": 5})  # fmt: skip
    assert r.status_code == 200
    d = r.json()
    ref = query_flakes(db, layers=[1], min_area_um2=30, sort="area")
    assert d["total"] == len(ref) > 5
    assert [x["id"] for x in d["rows"]] == [x["id"] for x in ref[:5]]
    p2 = client.get("/api/flakes", params={"layers": "1", "min_area_um2": 30, "page": 2,
                                           "page_size": 5}).json()  # fmt: skip
    assert [x["id"] for x in p2["rows"]] == [x["id"] for x in ref[5:10]]
    assert r.headers["server-timing"].startswith("app;dur=")
    thin = client.get("/api/flakes", params={"thin": True, "page_size": 1000}).json()
    assert thin["total"] == len(query_flakes(db, thin_only=True))
    for bad in ({"layers": "one"}, {"sort": "colour"}, {"min_probability": 2},
                {"page": 0}, {"page_size": 100000}):  # fmt: skip
        assert client.get("/api/flakes", params=bad).status_code == 422, bad


def test_flake_get_patch_and_image(client):
    fid = client.get("/api/flakes", params={"thin": True}).json()["rows"][0]["id"]
    f = client.get(f"/api/flakes/{fid}").json()
    assert f["id"] == fid and len(f["predicted"]["contrast"]) == 8
    # the measured contrast sits near the model's for its layer count
    pred = np.array(f["predicted"]["contrast"][f["layers"] - 1])
    meas = np.array([f["contrast_r"], f["contrast_g"], f["contrast_b"]])
    assert np.abs(pred - meas).max() < 0.05
    r = client.patch(f"/api/flakes/{fid}", json={"favourite": True, "note": "stack me"})
    assert r.status_code == 200 and r.json()["favourite"] is True
    again = client.get(f"/api/flakes/{fid}").json()
    assert again["favourite"] is True and again["note"] == "stack me" and again["used"] is False
    assert client.patch(f"/api/flakes/{fid}", json={"used": "maybe"}).status_code == 422
    assert client.patch(f"/api/flakes/{fid}", json={"note": "x" * 5000}).status_code == 422
    assert client.get("/api/flakes/999999").status_code == 404
    png = client.get(f"/api/flakes/{fid}/image.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    crop = np.asarray(Image.open(io.BytesIO(png.content)))
    assert max(crop.shape[:2]) >= 250  # enough around it, not a 60-px margin upscaled
    assert (crop[-20:, 9:20] == 255).all(-1).any()  # the scale bar's start, bottom left
    # neighbours to step through
    ids = sorted(r["id"] for r in client.get("/api/flakes", params={"page_size": 1000})
                 .json()["rows"])  # fmt: skip
    k = ids.index(fid)
    assert f["next"] == (ids[k + 1] if k + 1 < len(ids) else None)
    assert f["previous"] == (ids[k - 1] if k else None)
    thumb = client.get(f"/api/flakes/{fid}/thumbnail.jpg")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


def test_pages_map_docs_and_export(client, site):
    _, db = site
    for path in ("/", "/flakes", "/flake/1", "/try", "/calibrate"):
        r = client.get(path)
        assert r.status_code == 200 and "<html" in r.text, path
    assert "OpenSeadragon" in client.get("/static/vendor/openseadragon/openseadragon.min.js").text
    m = client.get("/api/map").json()
    assert m["dzi"] == "/map/mosaic.dzi" and m["markers"]
    assert 'TileSize="254"' in client.get("/map/mosaic.dzi").text
    assert all(0 <= k["x"] <= m["width"] and 0 <= k["y"] <= m["height"] for k in m["markers"])
    assert client.get("/openapi.json").json()["paths"]["/api/flakes"]
    assert client.get("/docs").status_code == 200
    csv = client.get("/api/export", params={"format": "csv"})
    assert csv.status_code == 200 and csv.text.startswith("id,chip,")
    z = client.get("/api/export", params={"format": "2dmatgmm"})
    assert z.status_code == 200 and z.content[:2] == b"PK"
    pos = client.get("/api/export", params={"format": "micromanager", "layers": "1"})
    assert pos.status_code == 200 and pos.headers["content-disposition"].endswith('.pos"')
    listed = pos.json()["map"]["StagePositions"]["array"]
    assert len(listed) == len(query_flakes(db, layers=[1])) > 0
    assert "/api/export?format=micromanager" in client.get("/flakes").text
    assert client.get("/api/export", params={"format": "xml"}).status_code == 422


def test_detect_upload(client, site):
    root, _ = site
    from qupaint.constants import MIN_SCORE
    from qupaint.detect import DetectorSettings, detect

    img = np.asarray(Image.open(root / "chip" / "tiles" / "tile_0001.jpg"))
    data = _jpeg(img)
    r = client.post("/api/detect", files={"file": ("t.jpg", data, "image/jpeg")},
                    data={"material": "graphene"})  # fmt: skip
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["detections"] and d["overlay"].startswith("data:image/jpeg;base64,")
    assert all("segmentation" not in x for x in d["detections"])
    # the flakes `qupaint detect` finds with the same (default) microscope on these pixels
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    want = [x for x in detect(pixels, "graphene", DetectorSettings.from_microscope("2dmatgmm"))
            if x["score"] >= MIN_SCORE]  # fmt: skip
    assert sorted((tuple(x["bbox"]), x["layers"]) for x in d["detections"]) == \
        sorted((tuple(x["bbox"]), x["layers"]) for x in want)
    bad = client.post("/api/detect", files={"file": ("t.jpg", _jpeg(img), "image/jpeg")},
                      data={"material": "notamaterial"})  # fmt: skip
    assert bad.status_code == 422
    # the fused method: the same door, the same flakes as `qupaint detect --method fused`
    r = client.post("/api/detect", files={"file": ("t.jpg", data, "image/jpeg")},
                    data={"material": "graphene", "method": "fused"})  # fmt: skip
    assert r.status_code == 200, r.text
    want = [x for x in detect(pixels, "graphene",
                              DetectorSettings.from_microscope("2dmatgmm", method="fused"))
            if x["score"] >= MIN_SCORE]  # fmt: skip
    assert sorted((tuple(x["bbox"]), x["layers"]) for x in r.json()["detections"]) == \
        sorted((tuple(x["bbox"]), x["layers"]) for x in want)
    bad = client.post("/api/detect", files={"file": ("t.jpg", data, "image/jpeg")},
                      data={"material": "graphene", "method": "guess"})  # fmt: skip
    assert bad.status_code == 422 and "method" in bad.text


def test_calibrate_upload_returns_a_camera(client, site):
    root, db = site
    S = open_db(db)
    with S() as s:  # click the centres of a monolayer and a bilayer on one frame
        from qupaint.scan.db import Image as Frame

        cands = s.scalars(
            sa.select(Flake).where(Flake.layers <= 2, Flake.views == 1, Flake.area_um2 > 60)
        ).all()
        by_frame: dict = {}
        for f in cands:
            by_frame.setdefault(f.image_id, {})[f.layers] = f
        frame_id = next(k for k, v in sorted(by_frame.items()) if len(v) == 2)
        picks = [by_frame[frame_id][1], by_frame[frame_id][2]]
        fr = s.get(Frame, frame_id)
    um = 0.385
    pts = [{"x": (f.x_mm - fr.x_mm) * 1000 / um + fr.width / 2,
            "y": (f.y_mm - fr.y_mm) * 1000 / um + fr.height / 2, "layers": f.layers}
           for f in picks]  # fmt: skip
    files = {fr.file}
    raw = (root / "chip" / files.pop()).read_bytes()
    import json

    r = client.post("/api/calibrate", files={"file": ("f.jpg", raw, "image/jpeg")},
                    data={"material": "graphene", "points": json.dumps(pts),
                          "camera": "2dmatgmm"})  # fmt: skip
    assert r.status_code == 200, r.text
    d = r.json()
    assert {"camera", "oxide_nm", "rms"} <= set(d) and d["rms"] < 0.05
    assert len(d["observations"]) == 2
    out = client.post(
        "/api/calibrate",
        files={"file": ("f.jpg", raw, "image/jpeg")},
        data={"material": "graphene", "points": '[{"x": 99999, "y": 1, "layers": 1}]'},
    )
    assert out.status_code == 422


# -- security -----------------------------------------------------------------------------
def test_token_required_when_set(site):
    _, db = site
    c = TestClient(create_app(db, token="s3cret-token"))
    assert c.get("/api/flakes").status_code == 401
    assert c.get("/").status_code == 401
    assert c.get("/api/flakes", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = c.get("/api/flakes", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    first = c.get("/?token=s3cret-token")  # the link `qupaint serve` prints sets a cookie
    assert first.status_code == 200 and "qupaint_token" in first.headers.get("set-cookie", "")
    assert c.get("/api/flakes").status_code == 200  # the cookie now


def test_uploads_are_limited_and_sniffed(site):
    _, db = site
    c = TestClient(create_app(db, max_upload_mb=0.05), base_url="http://127.0.0.1")
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    data = io.BytesIO()
    Image.fromarray(big).save(data, format="PNG")
    r = c.post("/api/detect", files={"file": ("a.png", data.getvalue(), "image/png")},
               data={"material": "graphene"})  # fmt: skip
    assert r.status_code == 413
    r = c.post("/api/detect", files={"file": ("a.png", b"#!/bin/sh\nrm -rf /\n", "image/png")},
               data={"material": "graphene"})  # fmt: skip
    assert r.status_code == 415  # named .png, sent as image/png, but not an image


def test_paths_cannot_traverse(client):
    for path in ("/map/../../etc/passwd", "/static/..%2f..%2fpyproject.toml",
                 "/map/%2e%2e/%2e%2e/etc/passwd", "/static/%2e%2e/app.py", "/map//etc/passwd",
                 "/static/..\\..\\app.py"):  # fmt: skip
        r = client.get(path)
        assert r.status_code in (404, 400), (path, r.status_code)
        assert "root:" not in r.text and "import" not in r.text
    assert client.get("/api/flakes/..%2f1").status_code in (404, 422)
    assert client.get("/api/flakes/%2fetc%2fpasswd").status_code in (404, 422)


def test_cross_origin_writes_are_refused(client):
    fid = client.get("/api/flakes").json()["rows"][0]["id"]
    r = client.patch(f"/api/flakes/{fid}", json={"used": True},
                     headers={"Origin": "http://evil.example"})  # fmt: skip
    assert r.status_code == 403
    assert client.get(f"/api/flakes/{fid}").json()["used"] is False
    same = client.patch(f"/api/flakes/{fid}", json={"used": True},
                        headers={"Origin": "http://127.0.0.1"})  # fmt: skip
    assert same.status_code == 200
    client.patch(f"/api/flakes/{fid}", json={"used": False})


# -- robustness ---------------------------------------------------------------------------
def test_app_keeps_serving_while_a_scan_writes(site, tmp_path):
    root, _ = site
    db = tmp_path / "busy.sqlite"
    scan_folder(root / "chip", db, "graphene", workers=1, chip="first")
    c = TestClient(create_app(db), base_url="http://127.0.0.1")
    ids = [r["id"] for r in c.get("/api/flakes", params={"page_size": 20}).json()["rows"]]
    errors, done = [], threading.Event()

    def writer():
        try:  # a second scan of the chip into the same database
            scan_folder(root / "chip", db, "graphene", workers=1, chip="second")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        done.set()

    th = threading.Thread(target=writer)
    th.start()
    statuses, expected = [], {}
    k = 0
    while not done.is_set() or k < 40:
        fid = ids[k % len(ids)]
        val = bool(k % 2)
        r = c.patch(f"/api/flakes/{fid}", json={"favourite": val, "note": f"edit {k}"})
        statuses.append(r.status_code)
        if r.status_code == 200:
            expected[fid] = (val, f"edit {k}")
        statuses.append(c.get("/api/flakes", params={"thin": True}).status_code)
        k += 1
        if k > 2000:
            break
        time.sleep(0.005)
    th.join()
    assert not errors and set(statuses) == {200}, set(statuses)
    for fid, (val, note) in expected.items():  # no update lost
        f = c.get(f"/api/flakes/{fid}").json()
        assert (f["favourite"], f["note"]) == (val, note)
