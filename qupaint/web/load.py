"""A bounded load test for ``qupaint serve``: ``clients`` threads for ``seconds`` against a
running server, each mixing table filters, flake reads, edits (PATCH) and image uploads.

Every client edits its own flake, so after the run each flake must hold the client's last
edit: a lost update would show. Returns requests per second, latency percentiles by kind,
the errors and the lost edits."""

from __future__ import annotations

import random
import threading
import time

import numpy as np

__all__ = ["run_load"]

KINDS = ("filter", "read", "patch", "upload")
WEIGHTS = (0.5, 0.15, 0.2, 0.15)


def run_load(base_url: str, flake_ids: list[int], image: bytes, seconds: float = 30.0,
             clients: int = 8, material: str = "graphene", token: str | None = None,
             seed: int = 0) -> dict:  # fmt: skip
    """Load ``base_url`` (see the module doc); ``flake_ids`` needs one id per client."""
    import httpx

    if len(flake_ids) < clients:
        raise ValueError(f"flake_ids: need one flake per client ({clients}); got {len(flake_ids)}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    lat: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: list[str] = []
    last: dict[int, tuple[bool, str]] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        fid = flake_ids[i]
        k = 0
        with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as c:
            while time.perf_counter() < stop:
                kind = rng.choices(KINDS, WEIGHTS)[0]
                t0 = time.perf_counter()
                try:
                    if kind == "filter":
                        params = {"layers": rng.choice(["1", "2", "1,2", ""]),
                                  "min_area_um2": rng.choice([0, 50, 100]),
                                  "sort": rng.choice(["area", "probability", "id"]),
                                  "page": rng.randint(1, 3)}  # fmt: skip
                        r = c.get(
                            "/api/flakes", params={k_: v for k_, v in params.items() if v != ""}
                        )
                    elif kind == "read":
                        r = c.get(f"/api/flakes/{rng.choice(flake_ids)}")
                    elif kind == "patch":
                        used, note = bool(rng.getrandbits(1)), f"client {i} edit {k}"
                        r = c.patch(f"/api/flakes/{fid}", json={"used": used, "note": note})
                        if r.status_code == 200:
                            with lock:
                                last[fid] = (used, note)
                    else:
                        r = c.post("/api/detect", files={"file": ("f.jpg", image, "image/jpeg")},
                                   data={"material": material})  # fmt: skip
                    ok = r.status_code == 200
                except httpx.HTTPError as exc:
                    ok, r = False, exc
                dt = time.perf_counter() - t0
                with lock:
                    lat[kind].append(dt)
                    if not ok:
                        errors.append(f"{kind}: {getattr(r, 'status_code', r)}")
                k += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lost = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as c:
        for fid, (used, note) in last.items():
            f = c.get(f"/api/flakes/{fid}").json()
            if (f["used"], f["note"]) != (used, note):
                lost.append(fid)
    n = sum(len(v) for v in lat.values())
    every = np.concatenate([np.asarray(v) for v in lat.values() if v]) if n else np.zeros(1)

    def ms(a, q):
        return round(float(np.percentile(np.asarray(a) * 1000.0, q)), 1) if len(a) else None

    return {
        "clients": clients, "seconds": round(wall, 2), "requests": n,
        "requests_per_s": round(n / wall, 1), "p50_ms": ms(every, 50), "p95_ms": ms(every, 95),
        "by_kind": {k: {"requests": len(v), "p50_ms": ms(v, 50), "p95_ms": ms(v, 95)}
                    for k, v in lat.items()},
        "errors": errors[:20], "error_count": len(errors), "patched_flakes": len(last),
        "lost_updates": lost,
    }  # fmt: skip
