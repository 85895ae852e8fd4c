"""``ptychostudy reruns``: what a change reruns, computed from the pipeline (docs/reruns.md).

For every key of params.yaml and every file the stages depend on, the stages DVC calls stale after an edit
of it (what ``dvc status`` lists: a stage whose declared params or dependency files changed) and the stages
downstream of those, which ``dvc repro`` reruns too when their inputs come out different (in this study
they do: a changed stage writes other bytes). Computed with DVC's own index of ``dvc.yaml`` rendered with
``params.yaml`` (its params and file dependencies, its graph), so it describes the design in the work tree;
``tests/test_dvc_workflow.py`` checks the stale sets against real ``dvc status`` on the tiny profile.
``--check`` exits 1 when the page no longer matches the pipeline (a test runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from ptychostudy import stage
from ptychostudy.dag import page_parser, publish

PAGE = Path("docs/reruns.md")
HEADER = """# What a change reruns

Computed by `ptychostudy reruns` from `dvc.yaml` and `params.yaml` with DVC's own index (a test checks that this
page is current, and checks the stale sets against real `dvc status` on the tiny profile). For an edit of a
params key or of a file: **stale at once** is what `dvc status` lists (stages whose declared params or
dependency files changed); **then downstream** is what reads their outputs, which `dvc repro` reruns after them
where those outputs come out different — at most these: a stale stage that writes the same bytes again (the views
of an object a `study.subsets` edit does not touch; run1084's prepared base when the star's pattern changes) stops
the chain there. Keys and files with the same effect share a row; `×n` counts the stages of one kind (one per
object × dose, per object × dose × view, ...).

The default design has {total} stages.

"""


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    params: frozenset[str]  # declared params keys (``train`` or ``train.epochs.dense``)
    files: frozenset[str]  # dependency paths
    outs: frozenset[str]
    downstream: frozenset[str]  # every stage that reads its outputs, directly or through others


def stages(root: str | Path = ".") -> dict[str, Stage]:
    """The pipeline's stages as DVC renders them from ``dvc.yaml`` and ``params.yaml`` in ``root``."""
    import networkx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root), uninitialized=True) as repo:
        index = repo.index
        graph = index.graph  # an edge goes from a stage to the stage whose output it reads
        out = {}
        for s in index.stages:
            params = frozenset(p for d in s.deps if isinstance(d, ParamsDependency) for p in d.params)
            files = frozenset(d.def_path for d in s.deps if not isinstance(d, ParamsDependency))
            out[s.name] = Stage(s.name, s.cmd, params, files, frozenset(o.def_path for o in s.outs),
                                      frozenset(a.name for a in networkx.ancestors(graph, s)))
    return out


def _rendered_with(root: Path, key: str, value) -> dict[str, Stage]:
    """The stages of ``root``'s pipeline with one params key set to ``value`` (in a scratch copy)."""
    import tempfile

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    tree = params
    *parents, last = key.split(".")
    for part in parents:
        tree = tree[part]
    tree[last] = value
    with tempfile.TemporaryDirectory(prefix="ptychostudy-reruns-") as scratch:
        (Path(scratch) / "dvc.yaml").write_bytes((root / "dvc.yaml").read_bytes())
        (Path(scratch) / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        return stages(scratch)


def _other_value(params: dict, key: str, value):
    """A different valid value for a key ``dvc.yaml`` expands stages over: a list one shorter (or one of the study's
    doses or views added), another of the study's doses or views for a single one; None when there is none."""
    doses, views = params["study"]["doses"], params["study"]["views"]
    if isinstance(value, list):
        if len(value) > 1:
            return value[:-1]
        pool = doses if all(v in doses for v in value) else views
        extra = [v for v in pool if v not in value]
        return value + extra[:1] if extra else None
    pool = doses if value in doses else views if value in views else []
    return next((v for v in pool if v != value), None)
def leaf_keys(tree: dict, where: str = "") -> list[str]:
    """Every key of a params mapping down to its values (lists are values): ``train.epochs.dense``, ..."""
    keys = []
    for key, value in tree.items():
        name = f"{where}.{key}" if where else str(key)
        keys += leaf_keys(value, name) if isinstance(value, dict) and value else [name]
    return keys


def stale_for_key(pipeline: dict[str, Stage], key: str) -> set[str]:
    """The stages whose declared params include ``key`` (DVC compares a declared key's whole value) or lie inside it
    (a mapping key such as ``refine.steps`` holds the declared ``refine.steps.dense``); a caller that changes only
    part of a mapping asks for that leaf."""
    return {s.name for s in pipeline.values()
            if any(key == p or key.startswith(p + ".") or p.startswith(key + ".") for p in s.params)}


def stale_for_file(pipeline: dict[str, Stage], path: str) -> set[str]:
    path = path.rstrip("/")
    return {s.name for s in pipeline.values()
            if any(path == f or path.startswith(f.rstrip("/") + "/") for f in s.files)}


def downstream(pipeline: dict[str, Stage], names: set[str]) -> set[str]:
    return set().union(*(pipeline[n].downstream for n in names)) - names if names else set()


def kinds(names: set[str]) -> str:
    if not names:
        return "none"
    counts = Counter(n.split("@", 1)[0] for n in names)
    return ", ".join(k if c == 1 else f"{k} ×{c}" for k, c in sorted(counts.items()))


def _template_keys(dvc_yaml: str) -> list[str]:
    """params keys ``dvc.yaml`` interpolates (``${study.doses}``, ``${measured.tuning_view}``): an edit of one
    changes which stages exist or what they read, not a declared params value."""
    keys = re.findall(r"\$\{\s*([a-z_][\w.]*)\s*\}", dvc_yaml)
    return sorted({k for k in keys if k.split(".")[0] not in ("item", "key")})


def _shown(value) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def _definition_changes(before: dict[str, Stage], after: dict[str, Stage]) -> tuple[set[str], set[str]]:
    """(stages new or defined differently after the edit, stages the edit removes)."""
    changed = {n for n, s in after.items() if n not in before
               or (s.cmd, s.params, s.files, s.outs) != (before[n].cmd, before[n].params, before[n].files, before[n].outs)}
    return changed, set(before) - set(after)


def stale_after_template_edit(root: Path, pipeline: dict[str, Stage], key: str, value):
    """(stages stale after setting a key ``dvc.yaml`` interpolates to ``value``: new, defined differently or
    declaring the key; stages removed; the pipeline after the edit)."""
    after = _rendered_with(root, key, value)
    changed, removed = _definition_changes(pipeline, after)
    return changed | stale_for_key(after, key), removed, after  # summarize declares `study` itself


def rows(root: str | Path = ".") -> tuple[int, list[tuple[str, set[str], set[str]]]]:
    """(number of stages, [(edit, stale at once, then downstream)]) for every params key and input file."""
    root = Path(root)
    pipeline = stages(root)
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    templated = _template_keys((root / "dvc.yaml").read_text(encoding="utf-8"))
    out = []
    for key in templated:
        tree = params
        for part in key.split("."):
            tree = tree[part]
        other = _other_value(params, key, tree)
        if other is None:
            continue
        changed, removed, after = stale_after_template_edit(root, pipeline, key, other)
        label = f"`{key}` ({_shown(tree)} → {_shown(other)}{'; removes ' + kinds(removed) if removed else ''})"
        later = set().union(*(after[n].downstream for n in changed)) - changed if changed else set()
        out.append((label, changed, later))
    groups: dict[tuple, list[str]] = {}
    for key in leaf_keys(params):
        if any(key == t or key.startswith(t + ".") for t in templated):
            continue
        stale = stale_for_key(pipeline, key)
        groups.setdefault(("params", key.split(".")[0], frozenset(stale)), []).append(key)
    written = {o for s in pipeline.values() for o in s.outs}
    inputs = sorted({f for s in pipeline.values() for f in s.files
                     if not any(f == o or f.startswith(o.rstrip("/") + "/") for o in written)})
    for path in inputs:
        stale = stale_for_file(pipeline, path)
        groups.setdefault(("file", path.split("/")[0], frozenset(stale)), []).append(path)
    for (_, _, stale), names in groups.items():
        out.append((", ".join(f"`{n}`" for n in names), set(stale), downstream(pipeline, set(stale))))
    return len(pipeline), out


def page(root: str | Path = ".") -> str:
    total, table = rows(root)
    lines = [HEADER.format(total=total),
             "| edit of | stale at once | then downstream | stages in all |", "|---|---|---|---:|"]
    for label, stale, later in table:
        count = len(stale) + len(later)
        lines.append(f"| {label} | {kinds(stale)} | {kinds(later)} | {count if stale or later else '–'} |")
    return "\n".join(lines) + "\n"


def cli(args) -> None:
    publish(args, page("."), "is not what the pipeline reruns now: run `ptychostudy reruns`", "what each change reruns")


def build_parser(prog: str = "python -m ptychostudy.reruns") -> argparse.ArgumentParser:
    return page_parser(prog, __doc__, PAGE)


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.reruns") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
