"""The study's core, counted from dvc.yaml: the modules in every stage's dependencies, and how many stages
each module reaches (``python bench/core_closure.py``; ``--json`` for a machine-readable copy)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def stage_sources() -> dict[str, set[str]]:
    """Each stage (foreach/matrix counted once per generated stage) -> the src/ files it depends on."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        sources = {d for d in body["deps"] if str(d).startswith("src/")}
        if "foreach" in stage:
            count = len(stage["foreach"]) if isinstance(stage["foreach"], list) else len(params["study"]["doses"])
        elif "matrix" in stage:
            section = "replicate" if "replicate" in str(stage["matrix"]["dose"]) else "study"
            count = len(params[section]["doses"]) * len(params[section]["views"])
        else:
            count = 1
        for i in range(count):
            out[f"{name}#{i}" if count > 1 else name] = sources
    return out


def main() -> None:
    sources = stage_sources()
    reach = Counter(path for paths in sources.values() for path in paths)
    core = sorted(set.intersection(*sources.values()))
    lines = {p: len((ROOT / p).read_text().splitlines()) for p in reach}
    result = {"stages": len(sources), "core": core, "core_lines": sum(lines[p] for p in core),
              "reach": {p: {"stages": n, "lines": lines[p]} for p, n in reach.most_common()}}
    if "--json" in sys.argv:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['stages']} stages; in every one: {', '.join(Path(p).relative_to('src/ptychostudy').as_posix() for p in core)} "
          f"({result['core_lines']} lines)")
    for path, n in reach.most_common():
        print(f"  {n:3d} stages  {lines[path]:4d} lines  {path}")


if __name__ == "__main__":
    main()
