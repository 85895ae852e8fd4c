"""What a change reruns: for typical edits, the stages `dvc status` calls stale on a study whose dvc.lock is up
to date (the issue's five edits first, then a few for reference).

    python bench/change_cost.py WORKSPACE        # a clone of this repository with the study computed
    python bench/change_cost.py --render         # only rewrite docs/core.md's table from bench/results.json

Each edit is applied to WORKSPACE's files, `dvc status --json` is read, and the files are restored
(`git checkout`, new files removed) before the next; WORKSPACE must be clean before and is clean after.
Writes bench/results.json "change_cost" and the table in docs/core.md between its markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "core.md"
BEGIN, END = "<!-- change_cost: begin (bench/change_cost.py --render) -->", "<!-- change_cost: end -->"


def _append_to_section(text: str, section: str, line: str) -> str:
    """params.yaml with ``line`` added at the end of ``section``'s block."""
    lines = text.split("\n")
    start = lines.index(f"{section}:") if f"{section}:" in lines else next(
        i for i, l in enumerate(lines) if re.match(rf"{section}:\s", l))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith((" ", "#"))), len(lines))
    while lines[end - 1].strip() == "":
        end -= 1
    return "\n".join(lines[:end] + [line] + lines[end:])


def _add_field(text: str, cls: str, field: str) -> str:
    """A schema module with ``field`` added as the last field of ``cls``."""
    lines = text.split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith(f"class {cls}("))
    last = max(i for i in range(start, len(lines)) if re.match(r"    \w+: .* = key\(", lines[i])
               and not any(lines[j].startswith("class ") for j in range(start + 1, i + 1)))
    return "\n".join(lines[:last + 1] + [f"    {field}"] + lines[last + 1:])


# name -> (what the issue expects, {path: function(old text) -> new text}); a None old text is a new file
EDITS = {
    "a new field in the product section": ("the product stages only", {
        "params.yaml": lambda t: _append_to_section(t, "product", "  beamline: nominal        # (bench/change_cost.py)"),
        "src/ptychostudy/params/product.py": lambda t: _add_field(
            t, "ProductParams", 'beamline: str = key("the nominal beamline named in the product files")'),
    }),
    "a style change in a training figure": ("the training figures only", {
        "src/ptychostudy/train_figure.py": lambda t: t.replace('ax.plot(epochs, [row["loss"] for row in history], "k.-")',
                                                               'ax.plot(epochs, [row["loss"] for row in history], "b.-")'),
    }),
    "a new refine parameter": ("the refinement stages only", {
        "params.yaml": lambda t: _append_to_section(t, "refine", "  warmup_steps: 0          # (bench/change_cost.py)"),
        "src/ptychostudy/params/refine.py": lambda t: _add_field(
            t, "RefineParams", 'warmup_steps: int = key("Adam steps at a rising learning rate", min=0)'),
    }),
    "a change to the scale-out driver": ("nothing", {
        "src/ptychostudy/scaleout.py": lambda t: t + "\n# (bench/change_cost.py)\n",
    }),
    "a new params section for a new phase": ("nothing (the new phase's own stages aside)", {
        "params.yaml": lambda t: t + "newphase:                 # (bench/change_cost.py)\n  seed: 1\n",
        "src/ptychostudy/params/newphase.py": lambda t: (
            '"""params ``newphase`` (bench/change_cost.py)."""\n\nfrom __future__ import annotations\n\n'
            "from dataclasses import dataclass\n\nfrom ptychostudy.params import Section, key\n\n\n"
            "@dataclass(frozen=True)\nclass NewphaseParams(Section):\n    SECTION = \"newphase\"\n\n"
            '    seed: int = key("a seed", min=0)\n'),
        "src/ptychostudy/config.py": lambda t: t.replace(
            "from ptychostudy.params.measured import MeasuredParams",
            "from ptychostudy.params.measured import MeasuredParams\nfrom ptychostudy.params.newphase import NewphaseParams"
        ).replace("ProductParams, MeasuredParams)}", "ProductParams, MeasuredParams, NewphaseParams)}"),
    }),
    # for reference: the shared modules
    "a change to the network's code (model.py)": ("reference", {
        "src/ptychostudy/model.py": lambda t: t + "\n# (bench/change_cost.py)\n"}),
    "a change to the scoring code (metrics.py)": ("reference", {
        "src/ptychostudy/metrics.py": lambda t: t + "\n# (bench/change_cost.py)\n"}),
    "a change to the data contract's reader (dataset.py)": ("reference", {
        "src/ptychostudy/dataset.py": lambda t: t + "\n# (bench/change_cost.py)\n"}),
    "a change to the core (stage.py)": ("reference: every stage", {
        "src/ptychostudy/stage.py": lambda t: t + "\n# (bench/change_cost.py)\n"}),
}


def stale(workspace: Path, env: dict) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=workspace, env=env, capture_output=True,
                         text=True, check=True).stdout
    return sorted(json.loads(out))


def measure(workspace: Path) -> dict:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    total = len(subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=workspace, env=env,
                               capture_output=True, text=True, check=True).stdout.split())
    if stale(workspace, env):
        raise SystemExit(f"{workspace}: dvc status is not clean; compute the study there first")
    edits = {}
    for name, (expected, changes) in EDITS.items():
        written = []
        try:
            for rel, change in changes.items():
                path = workspace / rel
                old = path.read_text() if path.exists() else None
                new = change(old)
                if new == old:
                    raise SystemExit(f"{name}: the edit of {rel} changed nothing (the code moved?)")
                path.write_text(new)
                written.append((path, old))
            names = stale(workspace, env)
        finally:
            for path, old in written:
                if old is None:
                    path.unlink()
                else:
                    path.write_text(old)
        kinds = Counter(n.split("@")[0] for n in names)
        edits[name] = {"expected": expected, "stale": len(names), "by_stage": dict(sorted(kinds.items())),
                       "files": sorted(changes)}
        print(f"{len(names):4d}  {name}: {dict(sorted(kinds.items()))}")
    if stale(workspace, env):
        raise SystemExit(f"{workspace}: not clean after restoring the edits")
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=workspace, capture_output=True, text=True).stdout.strip()
    return {"method": "python bench/change_cost.py WORKSPACE: each edit applied, `dvc status --json` counted, restored",
            "study": "default params.yaml", "commit": commit, "stages": total, "edits": edits,
            "machine": {"cpu": cpu, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}


def render(entry: dict) -> None:
    rows = ["| edit | stale stages (of {}) | which | expected |".format(entry["stages"]), "|---|---:|---|---|"]
    for name, e in entry["edits"].items():
        which = ", ".join(f"{k} ×{v}" for k, v in e["by_stage"].items()) or "none"
        rows.append(f"| {name} | {e['stale']} | {which} | {e['expected']} |")
    table = (f"Measured on the default study at {entry['commit']} ({entry['machine']['date']}): "
             f"`python bench/change_cost.py WORKSPACE`.\n\n" + "\n".join(rows))
    text = DOC.read_text()
    i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:i] + "\n" + table + "\n" + text[j:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", nargs="?", type=Path, help="a clone with the study computed (dvc status clean)")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/core.md's table from results.json")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text())
    if not args.render:
        if args.workspace is None:
            parser.error("give a WORKSPACE, or --render")
        results["change_cost"] = measure(args.workspace.resolve())
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    render(results["change_cost"])


if __name__ == "__main__":
    main()
