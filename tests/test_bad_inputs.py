"""The bad-input catalogue (tests/README.md): each case runs the real command line on one broken
input and asserts the exit code, the message, and that the previous output is untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import OBJECT, PROBE, default_params, tiny_params, write_params
from test_bundle import CASES as BUNDLE_CASES

SENTINEL = b"previous output, must survive\n"


def cli(*args, cwd: Path):
    return subprocess.run([sys.executable, "-m", "ptychostudy", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _previous(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SENTINEL)
    return path


def _assert_refused(result, message: str, *kept: Path):
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    for path in kept:
        assert path.read_bytes() == SENTINEL, f"{path} was overwritten"


# --- params.yaml --------------------------------------------------------------------------

PARAMS = {  # case -> (mutation, message, whether the base stage reads the broken section)
    "typo": (lambda p: p["train"].update(learnig_rate=0.001), "unknown key train.learnig_rate", False),
    "typo in a section base reads": (lambda p: p["simulate"].update(sed=42), "unknown key simulate.sed", True),
    "wrong type": (lambda p: p["simulate"].update(positions_per_split="many"), "simulate.positions_per_split must be an integer", True),
    "out of range": (lambda p: p["views"]["definitions"]["dense"].update(overlap=1.5), "must lie in [0, 1)", False),
    "missing section": (lambda p: p.pop("views"), "missing key views", False),
    "missing section base reads": (lambda p: p.pop("base"), "missing key base", True),
}


@pytest.mark.parametrize("case", list(PARAMS))
def test_bad_params(case, tmp_path):
    """check-params refuses every case (the whole file, up front); a stage refuses those in the sections it reads
    (and writes nothing), and no stage validates a section it does not read."""
    params = default_params()
    mutate, message, read_by_base = PARAMS[case]
    mutate(params)
    bad = write_params(tmp_path / "params.yaml", params)
    _assert_refused(cli("check-params", "--params", bad, cwd=tmp_path), message)
    out = _previous(tmp_path / "prepared" / "run1084.npz")
    result = cli("base", "--params", bad, "--probe", PROBE, "--object-file", f"run1084={OBJECT}", "--out-dir", out.parent, cwd=tmp_path)
    if read_by_base:
        _assert_refused(result, message, out)
    else:
        assert result.returncode == 0, result.stderr


# --- base data ------------------------------------------------------------------------------


def _probe_arrays():
    with np.load(PROBE) as npz:
        return {k: npz[k] for k in npz.files}


def _object_arrays():
    with np.load(OBJECT) as npz:
        return {k: npz[k] for k in npz.files}


BASE = {
    "wrong sha256": ("object", lambda a: a.update(objectGuess=a["objectGuess"] * 1.0001), "has sha256", False),
    "missing key": ("object", lambda a: a.update(other=a.pop("objectGuess")), "lacks the key 'objectGuess'", True),
    "non-complex object": ("object", lambda a: a.update(objectGuess=np.abs(a["objectGuess"])), "objectGuess must be complex", True),
    "NaN in object": ("object", lambda a: a["objectGuess"].__setitem__((5, 5), np.nan), "objectGuess contains NaN or Inf", True),
    "Inf in probe": ("probe", lambda a: a["probe_real"].__setitem__((3, 3), np.inf), "probe_real contains NaN or Inf", True),
    "probe not square": ("probe", lambda a: a.update(probe_real=a["probe_real"][:, :60], probe_imag=a["probe_imag"][:, :60]),
                         "the probe must be square", True),
    "probe not N": ("probe", lambda a: a.update(probe_real=a["probe_real"][:48, :48], probe_imag=a["probe_imag"][:48, :48]),
                    "base.patch_size = 64 disagrees with the probe", True),
}


@pytest.mark.parametrize("case", list(BASE))
def test_bad_base_data(case, tmp_path):
    which, breaker, message, fix_sha = BASE[case]
    arrays = _probe_arrays() if which == "probe" else _object_arrays()
    breaker(arrays)
    broken = tmp_path / f"{which}.npz"
    np.savez(broken, **arrays)
    params = default_params()
    if fix_sha:  # the file is the one params.yaml names: the content check must catch it
        if which == "probe":
            params["base"]["probe_sha256"] = _sha(broken)
        else:
            params["base"]["object_files"]["run1084"]["sha256"] = _sha(broken)
    bad = write_params(tmp_path / "params.yaml", params)
    probe, obj = (broken, OBJECT) if which == "probe" else (PROBE, broken)
    out = _previous(tmp_path / "prepared" / "run1084.npz")
    result = cli("base", "--params", bad, "--probe", probe, "--object-file", f"run1084={obj}", "--out-dir", out.parent, cwd=tmp_path)
    _assert_refused(result, message, out)


# --- simulated and view NPZ files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A tiny Phase C data set written by the real command line."""
    from conftest import tiny_params as tiny

    root = tmp_path_factory.mktemp("sim")
    params = write_params(root / "params.yaml", tiny())
    assert cli("base", "--params", params, "--probe", PROBE, "--object-file", f"run1084={OBJECT}", "--out-dir", root, cwd=root).returncode == 0
    result = cli("--no-progress", "simulate", "--params", params, "--object", "run1084", "--dose", 100000, "--base", root / "run1084.npz",
                 "--out-dir", root / "dose_100000", "--report", root / "sim.json", "--figure", root / "sim.png", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def _npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


NPZ = {
    "missing key": (lambda a: a.pop("diffraction"), "missing key 'diffraction'"),
    "wrong dtype": (lambda a: a.update(diffraction=a["diffraction"].astype(np.float64)), "diffraction has dtype float64"),
    "length mismatch": (lambda a: a.update(xcoords=a["xcoords"][:-1]), "xcoords has"),
    "empty split": (lambda a: a.update(**{k: a[k][:0] for k in ("diffraction", "xcoords", "ycoords", "xcoords_start",
                                                                 "ycoords_start", "scan_index")}), "the split is empty"),
    "NaN pattern": (lambda a: a["diffraction"].__setitem__((0, 0, 0), np.nan), "diffraction contains NaN or Inf"),
}


@pytest.mark.parametrize("case", list(NPZ))
def test_bad_simulated_files(case, simulated, tmp_path):
    arrays = _npz(simulated / "dose_100000" / "patched_train.npz")
    NPZ[case][0](arrays)
    sim_dir = tmp_path / "dose_100000"
    sim_dir.mkdir()
    np.savez(sim_dir / "patched_train.npz", **arrays)
    (sim_dir / "patched_test.npz").write_bytes((simulated / "dose_100000" / "patched_test.npz").read_bytes())
    params = write_params(tmp_path / "params.yaml", tiny_params())
    out = tmp_path / "views"
    kept = [_previous(out / "train.npz"), _previous(tmp_path / "view.json")]
    result = cli("--no-progress", "views", "--params", params, "--object", "run1084", "--dose", 100000, "--view", "dense", "--sim-dir", sim_dir,
                 "--out-dir", out, "--report", tmp_path / "view.json", "--figure", tmp_path / "view.png", cwd=tmp_path)
    _assert_refused(result, NPZ[case][1], *kept)


def test_a_gridsize_2_view_without_groups_is_refused_by_training(simulated, tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_params())
    view = tmp_path / "view"
    result = cli("--no-progress", "views", "--params", params, "--object", "run1084", "--dose", 100000, "--view", "dense",
                 "--sim-dir", simulated / "dose_100000", "--out-dir", view, "--report", tmp_path / "v.json",
                 "--figure", tmp_path / "v.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    arrays = _npz(view / "train.npz")
    arrays.pop("groups")
    (view / "train.npz").unlink()
    np.savez(view / "train.npz", **arrays)
    outs = tmp_path / "models"
    kept = [_previous(outs / "wts.h5.zip"), _previous(outs / "r.json")]
    result = cli("--no-progress", "train", "--params", params, "--object", "run1084", "--dose", 100000, "--view", "dense", "--view-dir", view,
                 "--bundle", outs / "wts.h5.zip", "--report", outs / "r.json", "--history", outs / "h.csv",
                 "--timing", outs / "t.json", "--shown", outs / "f.npz", cwd=tmp_path)
    _assert_refused(result, "missing key 'groups'", *kept)


# --- Phases F and G ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dense_view(simulated, tmp_path_factory):
    root = tmp_path_factory.mktemp("fg")
    params = write_params(root / "params.yaml", tiny_params())
    result = cli("--no-progress", "views", "--params", params, "--object", "run1084", "--dose", 100000, "--view", "dense",
                 "--sim-dir", simulated / "dose_100000", "--out-dir", root / "view", "--report", root / "v.json",
                 "--figure", root / "v.png", cwd=root)
    assert result.returncode == 0, result.stderr
    return root, params


def _compare(root, params, tmp_path, iterative, inferred):
    out = tmp_path / "cell"
    kept = [_previous(out / "comparison_metrics.csv"), _previous(out / "comparison.json")]
    result = cli("--no-progress", "compare", "--params", params, "--object", "run1084", "--dose", 100000, "--view", "dense", "--view-dir",
                 root / "view", "--inferred", inferred, "--reconstructions", iterative, "--out-dir", out, cwd=tmp_path)
    return result, kept


def test_pty_chi_refuses_a_typo_in_its_settings(dense_view, tmp_path):
    root, _ = dense_view
    params = tiny_params()
    params["reconstruct"]["nosie_model"] = params["reconstruct"].pop("noise_model")
    bad = write_params(tmp_path / "params.yaml", params)
    kept = [_previous(tmp_path / "ptychi.npz"), _previous(tmp_path / "r.json")]
    result = cli("--no-progress", "reconstruct", "--params", bad, "--object", "run1084", "--dose", 100000, "--view", "dense", "--view-dir",
                 root / "view", "--out", tmp_path / "ptychi.npz", "--report", tmp_path / "r.json",
                 "--timing", tmp_path / "t.json", cwd=tmp_path)
    _assert_refused(result, "unknown key reconstruct.nosie_model", *kept)


def test_the_tune_stage_refuses_a_negative_regulariser(dense_view, tmp_path):
    root, _ = dense_view
    params = tiny_params()
    params["tune"]["ptychi_search"]["tv_weight"] = [-10, 3]
    bad = write_params(tmp_path / "params.yaml", params)
    kept = [_previous(tmp_path / "tuning.json")]
    result = cli("--no-progress", "tune", "--params", bad, "--object", "run1084", "--dose", 100000, "--view", "dense", "--view-dir",
                 root / "view", "--report", tmp_path / "tuning.json",
                 "--timing", tmp_path / "t.json", cwd=tmp_path)
    _assert_refused(result, "tune.ptychi_search.tv_weight[0] must be positive", *kept)


def test_the_tuned_arms_need_a_selection(dense_view, tmp_path):
    root, params = dense_view
    kept = [_previous(tmp_path / "gradient.npz"), _previous(tmp_path / "r.json")]
    result = cli("--no-progress", "gradient", "--params", params, "--object", "run1084", "--dose", 100000, "--view", "dense", "--view-dir",
                 root / "view", "--tuning", tmp_path / "none.json", "--out", tmp_path / "gradient.npz", "--report",
                 tmp_path / "r.json", "--timing", tmp_path / "t.json", cwd=tmp_path)
    _assert_refused(result, "run the tune stage first", *kept)


def test_infer_names_a_missing_network(dense_view, tmp_path):
    root, params = dense_view
    kept = [_previous(tmp_path / "inferred.npz")]
    result = cli("--no-progress", "infer", "--params", params, "--object", "run1084", "--dose", 100000, "--view", "dense", "--view-dir",
                 root / "view", "--models", tmp_path / "no-models", "--out", tmp_path / "inferred.npz",
                 "--timing", tmp_path / "t.json", cwd=tmp_path)
    _assert_refused(result, "needed for the pinn arm", *kept)


def test_compare_names_a_missing_inference(dense_view, tmp_path):
    root, params = dense_view
    result, kept = _compare(root, params, tmp_path, tmp_path / "reconstruct", tmp_path / "none.npz")
    _assert_refused(result, "none.npz (needed for the inferred arms)", *kept)


def test_compare_refuses_a_pickled_pty_chi_file(dense_view, tmp_path):
    root, params = dense_view
    inferred = _previous(tmp_path / "inferred.npz")  # never read: the pickled file is refused first
    iterative = tmp_path / "reconstruct"
    for arm in ("ptychi_tuned", "ptychi_heldout", "gradient", "gradient_heldout", "pinn_refined", "pinn_ptychi", "pinn_gradient"):
        _previous(iterative / f"{arm}.npz")
    np.savez(iterative / "ptychi.npz", object=np.array([{"payload": 1}], dtype=object), cost=np.ones(2),
             _metadata=np.array("{}"))
    result, kept = _compare(root, params, tmp_path, iterative, inferred)
    _assert_refused(result, "holds a pickled object", *kept)


# --- bundles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_bad_bundles(case, tmp_path):
    maker, message = BUNDLE_CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    bundle = work / "wts.h5.zip"
    bundle.write_bytes(maker())
    before = _sha(bundle)
    result = cli("check-bundle", bundle, cwd=work)
    _assert_refused(result, message)
    assert _sha(bundle) == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["work", "wts.h5.zip"]  # nothing extracted anywhere near
