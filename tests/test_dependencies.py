"""DVC must know what every stage runs: each stage's `deps` in dvc.yaml hold the import closure of
the modules its command runs (computed here from the code with an `ast` walk, package
`__init__.py` included), and the stages whose outputs depend on library versions depend on the
pinned environment files."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGE = "ptychostudy"
SRC = ROOT / "src"
ENVIRONMENT = ("requirements.lock.txt", "requirements.nodeps.txt")
# stages whose outputs a different library version changes (numbers or figure bytes): all but none
ENVIRONMENT_STAGES = ("base", "simulate", "views", "train", "tune", "reconstruct", "reconstruct_tuned", "gradient",
                      "compare", "summarize")


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file of a module of the package, or None when ``name`` is not one."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    path = src.joinpath(*parts)
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def imported_modules(path: Path) -> set[str]:
    """Every package module ``path`` imports, anywhere in the file (function-local imports too:
    they run when the function does)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            # `from ptychostudy import physics` imports a submodule; `import StudyError` an attribute
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative imports are not followed by this check; use absolute ones")
    return {name for name in found if module_file(name) is not None}


def closure(modules: set[str], src: Path = SRC) -> set[Path]:
    """The files of ``modules`` and of everything they import, transitively; importing a module
    runs its package's ``__init__.py`` first."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # parent packages run first
            path = module_file(".".join(parts[:i]), src)
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path))
    return seen


def command_modules(cmd: str) -> set[str]:
    """The module a stage's command runs (``python -m ptychostudy.<module> ...``): its phase's own entry
    point, never the ``ptychostudy`` command for people (module ``cli``)."""
    words = shlex.split(cmd)
    assert words[:2] == ["python", "-m"] and words[2].startswith(f"{PACKAGE}."), \
        f"a stage command must run `python -m {PACKAGE}.<module>`: {cmd}"
    return {words[2]}


def stage_closure(cmd: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in closure(command_modules(cmd))}


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _source_deps(stage: dict) -> set[str]:
    body = stage.get("do", stage)
    return {d for d in body["deps"] if str(d).startswith("src/")}


@pytest.mark.parametrize("name", list(_stages()))
def test_each_stage_depends_on_exactly_the_code_it_runs(name):
    stage = _stages()[name]
    body = stage.get("do", stage)
    expected = stage_closure(body["cmd"])
    listed = _source_deps(stage)
    assert not expected - listed, f"stage {name} runs but does not depend on: {sorted(expected - listed)}"
    assert not listed - expected, f"stage {name} depends on code it never runs: {sorted(listed - expected)}"


@pytest.mark.parametrize("name", ENVIRONMENT_STAGES)
def test_stages_depend_on_the_pinned_environment(name):
    body = _stages()[name].get("do", _stages()[name])
    assert set(ENVIRONMENT) <= set(body["deps"]), f"stage {name} must depend on {ENVIRONMENT}"
    for path in ENVIRONMENT:
        assert (ROOT / path).is_file()


def test_the_check_fails_when_an_import_is_not_a_dependency(tmp_path):
    """Copy the package, add one import to the training module, and the train stage's closure
    grows by exactly the module that import brings (which dvc.yaml does not list)."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(SRC / PACKAGE, src / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    train = src / PACKAGE / "train.py"
    train.write_text(train.read_text() + "\nfrom ptychostudy import summary  # noqa: E402,F401\n")
    cmd = _stages()["train"]["cmd"]
    before = {p.relative_to(SRC) for p in closure(command_modules(cmd))}
    after = {p.relative_to(src) for p in closure(command_modules(cmd), src)}
    assert Path(PACKAGE, "summary.py") in after - before
    listed = {Path(d).relative_to("src") for d in _source_deps(_stages()["train"])}
    assert not (after - listed) == set(), "the added import must show up as a missing dependency"


@pytest.mark.parametrize("name", ["reconstruct", "reconstruct_tuned", "gradient", "tune"])
def test_the_iterative_stages_do_not_depend_on_inference_or_the_network(name):
    listed = _source_deps(_stages()[name])
    for module in ("inference", "model", "bundle", "stitch", "train", "training"):
        assert f"src/{PACKAGE}/{module}.py" not in listed
    if name != "tune":  # only the selection scores (against the train split's truth)
        assert f"src/{PACKAGE}/metrics.py" not in listed
