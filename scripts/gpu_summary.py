"""One-page summary of a `make gpu-check` run: the test outcomes and every GPU benchmark
group saved for this GPU (benchmarks/results/*-<tag>.json), as markdown."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(gpu: str, tag: str, *logs: str) -> None:
    results = Path("benchmarks/results")
    lines = [f"# qupaint gpu-check on {gpu}", ""]
    profile = [log for log in logs if Path(log).stem.endswith("profile")]
    for log in [log for log in logs if log not in profile]:
        text = Path(log).read_text() if Path(log).is_file() else ""
        last = [
            ln for ln in text.splitlines() if " passed" in ln or " failed" in ln or "error" in ln
        ]
        lines.append(f"- `{Path(log).stem}`: {last[-1].strip() if last else 'no result line'}")
    lines += ["", "| group | run | time (ms) | items/s |", "|---|---|---|---|"]
    for f in sorted(results.glob(f"*-{tag}.json")):
        data = json.loads(f.read_text())
        for name, r in data.get("runs", {}).items():
            rate = f"{r['work'] / r['seconds']:.3g}" if r.get("work") else "-"
            lines.append(f"| {data['group']} | {name} | {1e3 * r['seconds']:.3f} | {rate} |")
    for log in profile:  # scripts/gpu_profile.py: wall time against kernel time per call
        text = Path(log).read_text().strip() if Path(log).is_file() else "no profile"
        lines += ["", "Where the time goes (one call, ms):", "", "```", text, "```"]
    out = results / f"gpu-summary-{tag}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"gpu-check: wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
