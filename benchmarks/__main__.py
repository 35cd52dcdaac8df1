"""``python -m benchmarks``: every benchmark, one after the other, with the machine named,
then the watching figures of pyair beside the watchfiles CLI, each against its target."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import assets, frameworks, handoff, idle, load, proxy, reload, templates, warm
from .common import Series, machine


def summary(
    usages: Sequence[idle.Usage], swaps: Sequence[Series], restarts: Sequence[Series]
) -> str:
    """The four watching rows: idle CPU and wakeups, template and .py save → served."""
    by_tool = {u.tool: u for u in usages}
    ours, peer = by_tool["pyair"], by_tool["watchfiles CLI"]
    swap, peer_swap = swaps[0], swaps[-1]
    restart = next(r for r in restarts if r.name == "pyair")
    peer_restart = next(r for r in restarts if r.name == "watchfiles CLI")
    ratio = ours.cpu_pct / peer.cpu_pct if peer.cpu_pct else float("inf")

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    rows = [
        (
            f"idle CPU over {ours.seconds:.0f} s, % of a core",
            f"{ours.cpu_pct:.3f} ({ratio:.2f}x)",
            f"{peer.cpu_pct:.3f}",
            f"≤ {idle.TARGET_CPU_PCT} and ≤ {idle.TARGET_RATIO}x",
            verdict(ours.cpu_pct <= idle.TARGET_CPU_PCT and ratio <= idle.TARGET_RATIO),
        ),
        (
            "idle wakeups/s, all threads",
            f"{ours.wakeups:.1f}",
            f"{peer.wakeups:.1f}",
            "(reported)",
            "",
        ),
        (
            "template save → served, median / p95 ms",
            f"{swap.median:.1f} / {swap.pct(95):.1f}",
            f"{peer_swap.median:.1f} / {peer_swap.pct(95):.1f}",
            f"median ≤ {templates.TARGET_MEDIAN_MS:.0f}",
            verdict(swap.median <= templates.TARGET_MEDIAN_MS),
        ),
        (
            ".py save → served (tiny app), median ms",
            f"{restart.median:.1f}",
            f"{peer_restart.median:.1f}",
            f"≤ {reload.TARGET_MEDIAN_MS:.0f}",
            verdict(restart.median <= reload.TARGET_MEDIAN_MS),
        ),
    ]
    lines = [
        "watching: pyair beside the watchfiles CLI (this run)",
        f"{'metric':<42} {'pyair':>16} {'watchfiles CLI':>16} {'target':>20} {'':>6}",
    ]
    for metric, mine, theirs, target, ok in rows:
        lines.append(f"{metric:<42} {mine:>16} {theirs:>16} {target:>20} {ok:>6}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    rounds = ["--rounds", str(args.rounds)]
    print(f"machine: {machine()}\n")
    usages = idle.main(["--seconds", str(args.idle_seconds)])
    print()
    restarts = reload.main(rounds)
    print()
    warm.main(rounds)
    print()
    frameworks.main(rounds)
    print()
    handoff.main(rounds)
    print()
    swaps = templates.main(rounds)
    print()
    proxy.main(rounds)
    print()
    assets.main(rounds)
    print()
    load.main([])
    print()
    print(summary(usages, swaps, restarts))


if __name__ == "__main__":
    main()
