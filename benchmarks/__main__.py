"""``python -m benchmarks``: every benchmark, one after the other, with the machine named."""

from __future__ import annotations

import argparse

from . import load, proxy, reload, templates, warm
from .common import machine


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    reload.main(["--rounds", str(args.rounds)])
    print()
    warm.main(["--rounds", str(args.rounds)])
    print()
    templates.main(["--rounds", str(args.rounds)])
    print()
    proxy.main(["--rounds", str(args.rounds)])
    print()
    load.main([])


if __name__ == "__main__":
    main()
