"""Peer benchmarks: every group compares ours with its peers on identical inputs.

Each benchmark records its best time through the ``peer`` fixture; at the end of the run
the ratios (peer time / our time, after scaling subset runs up to the full problem) are
printed and written to ``benchmarks/results/<group>-<machine>.json`` with the machine
description, so quoted numbers can be traced to a run.
"""

from __future__ import annotations

import json
import os
import platform
import socket
from collections import defaultdict
from pathlib import Path

import pytest

RESULTS = Path(os.environ.get("QUPAINT_BENCH_RESULTS", Path(__file__).parent / "results"))
_RUNS: dict[str, dict[str, dict]] = defaultdict(dict)


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    info = {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


@pytest.fixture
def peer(benchmark):
    """``peer(group, name, fn, scale=1.0, ours=False, work=None, rounds=None, extra=None)``.

    ``scale`` multiplies the measured time (a subset run extrapolated to the full problem);
    ``work`` is the number of items the full problem does (for items/s); ``extra`` is a dict
    saved with the run (``fn`` may fill it in, e.g. counts it produced).
    """

    def run(group, name, fn, scale=1.0, ours=False, work=None, rounds=None, extra=None):
        fn = _injected_slow(group, name, fn)
        benchmark.group = group
        benchmark.name = name
        if rounds is not None:
            benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
        else:
            benchmark(fn)
        best = benchmark.stats.stats.min * scale
        _RUNS[group][name] = {"seconds": best, "ours": ours, "scale": scale, "work": work}
        if extra:
            _RUNS[group][name]["extra"] = extra

    return run


def _injected_slow(group: str, name: str, fn):
    """``QUPAINT_BENCH_INJECT_SLOW=GROUP:NAME:FACTOR`` stretches that benchmark's every call
    to FACTOR times its own duration: a stand-in for a regressed kernel, used to prove that
    ``make bench-check`` fails (the kernel itself is untouched)."""
    spec = os.environ.get("QUPAINT_BENCH_INJECT_SLOW")
    if not spec:
        return fn
    g, n, factor = spec.rsplit(":", 2)
    if (g, n) != (group, name):
        return fn

    def slow():
        import time

        t0 = time.perf_counter()
        out = fn()
        time.sleep((float(factor) - 1.0) * (time.perf_counter() - t0))
        return out

    return slow


def pytest_terminal_summary(terminalreporter):
    if not _RUNS:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    mach = machine()
    tag = os.environ.get("QUPAINT_BENCH_MACHINE", mach["host"])
    tr = terminalreporter
    tr.section("qupaint peer ratios (peer time / our time; > 1 means we are faster)")
    for group, runs in _RUNS.items():
        ours = {k: v for k, v in runs.items() if v["ours"]}
        peers = {k: v for k, v in runs.items() if not v["ours"]}
        out = {"group": group, "machine": mach, "runs": runs, "ratios": {}}
        for o_name, o in ours.items():
            line = [f"{group}: {o_name} {o['seconds'] * 1e3:.2f} ms"]
            if o["work"]:
                line.append(f"({o['work'] / o['seconds']:.3g} items/s)")
            for p_name, p in peers.items():
                r = p["seconds"] / o["seconds"]
                out["ratios"][f"{p_name} / {o_name}"] = r
                line.append(f"| {p_name}: {r:.1f}x")
            tr.write_line(" ".join(line))
        with open(RESULTS / f"{group}-{tag}.json", "w") as fh:
            json.dump(out, fh, indent=2)
