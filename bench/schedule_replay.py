"""Replay `ptychostudy run`'s schedule on a recorded study: what a change of stage costs or threads does to the wall time.

    python bench/schedule_replay.py WORKSPACE DRIVER_LOG [--scale train=1.7 refine=0.8 ...] [--threads train=1 ...]
                                    [--first measured_ptychi measured_pinn] [--tail 10]

The driver (``ptychostudy.scaleout``) looks at the stages in ``dvc repro``'s order and starts every one whose upstream
stages have finished while its cores (the ``threads`` its params declare) are free. This bench takes the pipeline's
graph and order from WORKSPACE (``scaleout.plan``: DVC's own), each stage's seconds from a driver log (the
"done <stage> <n> s" lines of ``make study`` / ``ptychostudy run``), scales the seconds of stage kinds by ``--scale``,
overrides their threads by ``--threads`` and moves kinds to the front of the order by ``--first``, then replays the same
greedy policy on the machine's cores. It prints the replayed wall time beside the bound (core-seconds ÷ cores) and the
stages that end last. A replay of the log's own run with no change is the check that it models the driver: on the
2026-12-06 run it gave 6,083 s against the driver's 6,076 s. Nothing runs; seconds only.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

DONE = re.compile(r"\s+done\s+(\S+)\s+(\d+) s")


def _pairs(items: list[str], kind) -> dict:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"schedule_replay: {item!r} is not KIND=VALUE")
        out[key] = kind(value)
    return out


def replay(jobs, seconds: dict, threads: dict, cores: int):
    """(wall seconds, start time of each stage): the driver's policy with known durations."""
    state = {j.name: "waiting" for j in jobs}
    running: dict[str, float] = {}
    starts: dict[str, float] = {}
    now = 0.0
    while True:
        for j in jobs:
            if state[j.name] != "waiting" or not all(state[u] == "done" for u in j.upstream):
                continue
            used = sum(threads[r] for r in running)
            if running and (len(running) >= cores or used + min(threads[j.name], cores) > cores):
                continue
            state[j.name], running[j.name], starts[j.name] = "running", now + seconds[j.name], now
        if not running:
            return now, starts
        name = min(running, key=running.get)
        now = running.pop(name)
        state[name] = "done"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace", type=Path, help="a study workspace (its dvc.yaml and params.yaml give graph and threads)")
    p.add_argument("log", type=Path, help="the driver's log of a run of that pipeline")
    p.add_argument("--scale", nargs="*", default=[], metavar="KIND=FACTOR", help="multiply a stage kind's seconds")
    p.add_argument("--threads", nargs="*", default=[], metavar="KIND=N", help="another thread count for a stage kind")
    p.add_argument("--first", nargs="*", default=[], metavar="KIND", help="stage kinds moved to the front of the order")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    p.add_argument("--tail", type=int, default=0, help="print the stages that end last")
    args = p.parse_args(argv)
    sys.path.insert(0, str(args.workspace / "src"))
    from ptychostudy.scaleout import plan

    recorded = {m.group(1): float(m.group(2)) for m in map(DONE.match, args.log.read_text().splitlines()) if m}
    scale, threads_of = _pairs(args.scale, float), _pairs(args.threads, int)
    _, jobs = plan(args.workspace, [])
    jobs = [j for j in jobs if j.name.split("@")[0] in args.first] + [j for j in jobs if j.name.split("@")[0] not in args.first]
    kind = {j.name: j.name.split("@")[0] for j in jobs}
    missing = [j.name for j in jobs if j.name not in recorded]
    if missing:
        print(f"schedule_replay: {len(missing)} stages have no time in the log (taken as 0 s), e.g. {missing[0]}")
    seconds = {j.name: recorded.get(j.name, 0.0) * scale.get(kind[j.name], 1.0) for j in jobs}
    threads = {j.name: threads_of.get(kind[j.name], j.threads) for j in jobs}
    wall, starts = replay(jobs, seconds, threads, args.cores)
    core_seconds = sum(seconds[n] * threads[n] for n in seconds)
    print(f"replayed wall {wall:.0f} s ({wall / 60:.1f} min) on {args.cores} cores; core-seconds {core_seconds:.0f}, "
          f"bound {core_seconds / args.cores:.0f} s")
    for name in sorted(starts, key=lambda n: starts[n] + seconds[n])[-args.tail:] if args.tail else []:
        print(f"  {name:45s} start {starts[name]:6.0f} s, end {starts[name] + seconds[name]:6.0f} s, {threads[name]} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
