"""Shared fixtures: a tiny profile of the study that runs in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ptychostudy.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "data/base/fly001_probe/c1_bigT_probe.npz"
OBJECT = ROOT / "data/base/run1084/Run1084_recon3_postPC.npz"

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# The suite runs up to three busy process trees on two cores (two workers and the end-to-end build): OpenMP
# threads that spin while they wait would take the cores from the others. Passive waiting changes no bit of
# a result (test_numerics.py); torch has not loaded yet, and every process the tests start inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params() -> dict:
    """The tests' design: params.yaml with the tiny profile's keys (profiles/tiny.yaml, the one `make demo` runs)."""
    from ptychostudy.demo import profile_params

    return profile_params(ROOT / "profiles" / "tiny.yaml", ROOT / "params.yaml")


@pytest.fixture
def params() -> dict:
    return tiny_params()


@pytest.fixture
def cfg(params):
    return config_from_dict(params)


@pytest.fixture(scope="session")
def tiny_cfg():
    return config_from_dict(tiny_params())


@pytest.fixture(scope="session")
def tiny_base(tiny_cfg):
    from ptychostudy.base import prepare_base

    return prepare_base(tiny_cfg, PROBE, "run1084", OBJECT)


@pytest.fixture(scope="session")
def tiny_simulated(tiny_cfg, tiny_base, tmp_path_factory):
    """Phase C of the tiny profile at dose 1e5: (folder, facts)."""
    from ptychostudy.simulate import simulate_dose

    out = tmp_path_factory.mktemp("sim")
    facts = simulate_dose(tiny_cfg, tiny_base, 100000, out / "dose_100000", out / "report.json", out / "fig.png", progress=False)
    return out / "dose_100000", facts


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_views(tiny_cfg, tiny_simulated, tmp_path_factory):
    """Phase D of the tiny profile at dose 1e5: view name -> folder."""
    from ptychostudy.views import build_view

    sim_dir, _ = tiny_simulated
    out = tmp_path_factory.mktemp("views")
    folders = {}
    for view in ("baseline", "dense", "sparse"):
        folder = out / view
        build_view(tiny_cfg, "run1084", 100000, view, sim_dir, folder, out / f"{view}.json", out / f"{view}.png", progress=False)
        folders[view] = folder
    return folders


@pytest.fixture(scope="session")
def tiny_iterative(tiny_cfg, tiny_views, tmp_path_factory):
    """The selection and Phase F's five iterative arms of the tiny dense view at dose 1e5:
    (Phase F folder of <arm>.npz, tuning JSON, train-only view folder). The tune stage runs on a
    copy of the view that holds no test file: it cannot have read one."""
    import shutil

    from ptychostudy import gradient, reconstruct, tune

    out = tmp_path_factory.mktemp("iterative")
    train_only = out / "train-only"
    train_only.mkdir()
    for name in ("train.npz", "view.json"):
        shutil.copy(tiny_views["dense"] / name, train_only / name)
    tuning = out / "tuning.json"
    tune.run(tiny_cfg, "run1084", 100000, "dense", train_only, tuning, out / "tune-timing.json", progress=False)
    rec = out / "reconstruct"
    reconstruct.run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], rec / "ptychi.npz", out / "ptychi.json",
                    out / "ptychi-timing.json", arm="ptychi", progress=False)
    reconstruct.run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], rec / "ptychi_tuned.npz", out / "ptychi_tuned.json",
                    out / "ptychi_tuned-timing.json", arm="ptychi_tuned", tuning=tuning,
                    heldout_out=rec / "ptychi_heldout.npz", heldout_report=out / "ptychi_heldout.json",
                    curve_out=rec / "ptychi_tuned_curve.npz", progress=False)
    gradient.run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], tuning, rec / "gradient.npz", out / "gradient.json",
                 out / "gradient-timing.json", heldout_out=rec / "gradient_heldout.npz",
                 heldout_report=out / "gradient_heldout.json", curve_out=rec / "gradient_curve.npz", progress=False)
    return rec, tuning, train_only


def pytest_collection_modifyitems(config, items):
    """The end-to-end modules last: their tiny study is built in the background meanwhile (below)."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] in E2E_MODULES)


E2E_MODULES = ("tests/test_dvc_pipeline.py", "tests/test_dvc_workflow.py")


def _selects_e2e(config) -> bool:
    args = [str(a) for a in config.args]
    return not args or any(a.rstrip("/") in ("tests", ".", str(ROOT), str(ROOT / "tests")) or "test_dvc_" in a
                           for a in args)


def pytest_sessionstart(session):
    """Start building the end-to-end tests' tiny study (`e2e.py`) in a background process, beside the unit
    modules, once per session: in the process that starts the workers (or the only one). It runs stage
    processes for about three minutes; the end-to-end modules, sorted last, wait for it."""
    import subprocess
    import sys
    import tempfile

    config = session.config
    if os.environ.get("PYTEST_XDIST_WORKER") or not _selects_e2e(config) or os.environ.get("PTYCHOSTUDY_E2E_BUILD"):
        return
    folder = Path(tempfile.mkdtemp(prefix="ptychostudy-e2e-"))
    log = open(folder / "builder.log", "w")
    config._e2e_builder = (subprocess.Popen([sys.executable, str(ROOT / "tests" / "e2e.py"), str(folder)],
                                            cwd=ROOT / "tests", stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True), folder, log)
    os.environ["PTYCHOSTUDY_E2E_BUILD"] = str(folder)  # the workers inherit it


def pytest_sessionfinish(session, exitstatus):
    """Stop the background build if it still runs (its own process group only), remove its folder."""
    import shutil
    import signal

    builder = getattr(session.config, "_e2e_builder", None)
    if builder is None:
        return
    proc, folder, log = builder
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()
    os.environ.pop("PTYCHOSTUDY_E2E_BUILD", None)
    shutil.rmtree(folder, ignore_errors=True)
