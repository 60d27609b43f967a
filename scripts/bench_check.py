"""The benchmark regression gate: ``make bench-check`` (run by ``.ci/run`` after the tests).

Runs the benchmarks named in ``benchmarks/gates.json`` (a short subset), then checks every
gate's ratio (peer time / our time, measured in this same run) against its ``min_ratio``.
Exits 1 naming each kernel that fell below its gate, 0 when all hold. Results go to a
scratch folder, never over the quoted ones in ``benchmarks/results/``.

A neighbour's load must not trip a gate: the subset runs in ``--rounds`` rounds (default 2),
the order of ours and the peer reversed in every other round, one thread each
(``OMP_NUM_THREADS=1``), and each side's best time over the rounds makes the ratio; a gate
that still fails is measured once more (one more round of its own benchmarks) before it
fails.

    python scripts/bench_check.py [--gates FILE] [--only NAME ...] [--results DIR] [--rounds N]

``QUPAINT_BENCH_INJECT_SLOW=GROUP:NAME:FACTOR`` makes that benchmark FACTOR times slower
(a stand-in for a regressed kernel; the tests use it to prove the gate can fail).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "bench-check"


def load_gates(path: Path, only: list[str] | None = None) -> list[dict]:
    gates = json.loads(path.read_text())["gates"]
    if only:
        unknown = set(only) - {g["name"] for g in gates}
        if unknown:
            raise SystemExit(f"--only: unknown gate(s) {sorted(unknown)}")
        gates = [g for g in gates if g["name"] in only]
    return gates


def _round_dirs(results: Path) -> list[Path]:
    """The folder itself and its ``round-*`` subfolders (one per round)."""
    return [results, *sorted(results.glob("round-*"))]


def best_runs(results: Path, group: str) -> dict | None:
    """{name: {"seconds": best}} of a group over every round under ``results``; None when no
    round measured it."""
    best: dict = {}
    for d in _round_dirs(results):
        f = d / f"{group}-{TAG}.json"
        if not f.is_file():
            continue
        for name, run in json.loads(f.read_text())["runs"].items():
            if name not in best or run["seconds"] < best[name]["seconds"]:
                best[name] = {"seconds": run["seconds"]}
    return best or None


def check(gates: list[dict], results: Path) -> list[str]:
    """One line per failed gate (empty: all hold); prints every gate's ratio (each side's
    best time over the rounds)."""
    failed = []
    for g in gates:
        runs = best_runs(results, g["group"])
        if runs is None:
            failed.append(f"{g['name']}: no result for group {g['group']} (did it run?)")
            continue
        if g["ours"] not in runs or g["peer"] not in runs:
            failed.append(f"{g['name']}: {g['ours']} or {g['peer']} missing from {g['group']}")
            continue
        ratio = runs[g["peer"]]["seconds"] / runs[g["ours"]]["seconds"]
        ok = ratio >= g["min_ratio"]
        print(
            f"{'ok  ' if ok else 'FAIL'} {g['name']:<12} {g['peer']} / {g['ours']} = "
            f"{ratio:7.2f}x  (gate >= {g['min_ratio']}x, quoted {g.get('measured', '?')}x)"
        )
        if not ok:
            failed.append(
                f"{g['name']}: {g['ours']} is {ratio:.2f}x {g['peer']}, below the "
                f"gate {g['min_ratio']}x"
            )
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gates", type=Path, default=ROOT / "benchmarks" / "gates.json")
    ap.add_argument("--only", nargs="*", help="gate names to run (default: all)")
    ap.add_argument("--results", type=Path, help="where results go (default: a temp dir)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, each side's best counts")
    args = ap.parse_args(argv)
    gates = load_gates(args.gates, args.only)
    results = args.results or Path(tempfile.mkdtemp(prefix="qupaint-bench-check-"))
    tests = sorted({f"benchmarks/{t}" for g in gates for t in g["tests"]})
    t0 = time.perf_counter()
    for k in range(max(1, args.rounds)):  # ours and peer in turn, the order reversed each round
        if not _round(tests[::-1] if k % 2 else tests, results / f"round-{k}"):
            return 1
    failed = check(gates, results)
    if failed:  # measure a failing gate once more before failing it
        names = {line.split(":")[0] for line in failed}
        again = [g for g in gates if g["name"] in names]
        print(f"bench-check: {len(again)} gate(s) below the line; measuring them once more")
        retry = sorted({f"benchmarks/{t}" for g in again for t in g["tests"]})
        if not _round(retry[::-1], results / f"round-{max(1, args.rounds)}"):
            return 1
        failed = check(gates, results)
    print(f"bench-check: {len(gates) - len(failed)}/{len(gates)} gates hold "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    for line in failed:
        print(f"  {line}")
    return 1 if failed else 0


def _round(tests: list[str], out: Path) -> bool:
    """One round of benchmarks into ``out``; False when pytest itself failed."""
    # one thread each side: the honest comparison with a single-threaded peer, and one that a
    # busy neighbour core cannot tip (a parallel kernel loses a core, its peer does not)
    env = {
        **os.environ,
        "QUPAINT_BENCH_MACHINE": TAG,
        "QUPAINT_BENCH_RESULTS": str(out),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    r = subprocess.run([sys.executable, "-m", "pytest", *tests, "--benchmark-only", "-q",
                        "-p", "no:cacheprovider", "--benchmark-disable-gc",
                        "--benchmark-max-time=0.5"], cwd=ROOT, env=env)  # fmt: skip
    if r.returncode not in (0, 5):
        print(f"bench-check: the benchmarks failed (pytest exit {r.returncode})")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
