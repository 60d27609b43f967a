"""``python -m qupaint.train --config X.yaml [key=value ...]``: the torchrun entry point."""

from __future__ import annotations

import json
import sys

from qupaint.train import load_config, train


def main(argv: list[str]) -> int:
    import argparse

    import yaml

    ap = argparse.ArgumentParser(prog="python -m qupaint.train")
    ap.add_argument("--config", required=True)
    ap.add_argument("--summary", help="write the run summary (losses) as JSON (rank 0)")
    ap.add_argument("overrides", nargs="*", help="key=value (YAML values)")
    a = ap.parse_args(argv)
    kw = {}
    for item in a.overrides:
        k, _, v = item.partition("=")
        kw[k] = yaml.safe_load(v)
    res = train(load_config(a.config, **kw))
    import torch.distributed as dist

    if a.summary and (not dist.is_initialized() or dist.get_rank() == 0):
        with open(a.summary, "w") as fh:
            json.dump(res, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
