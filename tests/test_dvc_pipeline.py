"""End to end through the `dvc` command line, in a temporary git repository (tiny profile)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, tiny_params, write_params


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(tmp / "dvc-site-cache")
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.org"
    return env


def _run(args, cwd, env, check=True):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args, cwd, env, check=True):
    return _run([sys.executable, "-m", "dvc", *args], cwd, env, check)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh git + DVC repository holding the project's pipeline and a tiny params.yaml."""
    tmp = tmp_path_factory.mktemp("e2e")
    work = tmp / "study"
    work.mkdir()
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "data" / "base", work / "data" / "base")
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_params(work / "params.yaml", tiny_params())
    env = _env(tmp)
    _run(["git", "init", "-q", "-b", "main"], work, env)
    dvc("init", "-q", cwd=work, env=env)
    dvc("config", "core.analytics", "false", cwd=work, env=env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "tiny study"], work, env)
    return work, env


def test_repro_runs_every_stage_and_leaves_status_clean(repo):
    work, env = repo
    result = dvc("repro", cwd=work, env=env)
    for stage in ("base", "simulate@1000", "simulate@100000", "views@1000-dense", "views@100000-sparse", "summarize"):
        assert f"Running stage '{stage}'" in result.stdout
    for path in (
        "data/simulated/dose_1000/patched_train.npz",
        "data/simulated/dose_100000/patched_test.npz",
        "data/views/dose_1000/dense/train.npz",
        "data/views/dose_100000/baseline/test.npz",
        "reports/metrics.json",
        "reports/skip_summary.json",
        "reports/summary.md",
    ):
        assert (work / path).is_file(), path
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert metrics["dose_1000"]["views"]["dense"]["train"]["positions"] > 0
    shown = dvc("metrics", "show", cwd=work, env=env).stdout
    assert "dose_100000.mean_counts_per_pattern" in shown
    lock = (work / "dvc.lock").read_text()
    assert "data/simulated/dose_1000/patched_train.npz" in lock and "md5:" in lock


def test_forced_repro_leaves_dvc_lock_byte_identical(repo):
    work, env = repo
    before = (work / "dvc.lock").read_bytes()
    dvc("repro", "-f", "--no-run-cache", cwd=work, env=env)
    assert (work / "dvc.lock").read_bytes() == before
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def test_a_views_param_change_touches_only_views_and_params_diff_names_it(repo):
    work, env = repo
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "results"], work, env)
    params = tiny_params()
    params["views"]["neighbours"] = 8
    write_params(work / "params.yaml", params)
    try:
        changed = json.loads(dvc("status", "--json", cwd=work, env=env).stdout)
        assert changed and all(name.startswith("views@") for name in changed), changed
        diff = dvc("params", "diff", cwd=work, env=env).stdout
        assert "views.neighbours" in diff and "7" in diff and "8" in diff
    finally:
        write_params(work / "params.yaml", tiny_params())


def test_bad_params_fail_the_repro_and_keep_previous_outputs(repo):
    work, env = repo
    target = work / "data/simulated/dose_1000/patched_train.npz"
    before = target.read_bytes()
    params = tiny_params()
    params["simulate"]["seed"] = 7
    params["simulate"]["sede"] = 7
    write_params(work / "params.yaml", params)
    try:
        result = dvc("repro", "simulate@1000", cwd=work, env=env, check=False)
        assert result.returncode != 0
        assert "unknown key simulate.sede" in result.stderr + result.stdout
    finally:
        write_params(work / "params.yaml", tiny_params())
    # DVC removes a stage's outputs before running it: the cache restores the data and git the
    # (git-tracked) reports, byte for byte
    dvc("checkout", cwd=work, env=env)
    _run(["git", "checkout", "--", "reports"], work, env)
    assert target.read_bytes() == before
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}
