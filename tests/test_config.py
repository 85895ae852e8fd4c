"""params.yaml validation: each mistake is one clear sentence, exit code 2, nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ptychostudy.config import ConfigError, config_from_dict, load_config
from conftest import OBJECT, PROBE, ROOT, default_params, write_params


def test_shipped_params_are_valid():
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.study.doses == (1000, 10000, 100000)
    assert cfg.study.views == ("baseline", "dense", "sparse")
    assert cfg.view("dense").overlap == 0.7
    assert cfg.view("sparse").group_size == 4
    assert cfg.view("baseline").overlap is None


def test_full_profile_is_valid_and_differs_only_in_sizes():
    from ptychostudy.config import config_from_dict
    from ptychostudy.demo import profile_params

    full = config_from_dict(profile_params(ROOT / "profiles" / "full.yaml", ROOT / "params.yaml"))
    default = load_config(ROOT / "params.yaml")
    assert full.base.patch_size == 128 and full.base.probe_zoom == 2
    assert 2 * full.simulate.positions_per_split == 10304
    assert set(full.train.epochs.values()) == {50}
    assert full.views == default.views and full.study == default.study


def _set(params, dotted, value):
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value


DELETE = object()
BAD = [
    ("simulate.sed", 42, "unknown key simulate.sed"),
    ("study.dose", [1000], "unknown key study.dose"),
    ("extra", {}, "unknown key extra"),
    ("simulate.seed", DELETE, "missing key simulate.seed"),
    ("views", DELETE, "missing key views"),
    ("views.neighbours", 3, "views.neighbours (K = 3) must be at least C = gridsize² = 4"),
    ("views.definitions.dense.overlap", 1.0, "must lie in [0, 1)"),
    ("views.definitions.sparse.overlap", -0.1, "must lie in [0, 1)"),
    ("study.doses", [], "non-empty list"),
    ("study.doses", [1000, -5], "must be positive"),
    ("study.doses", [0], "must be positive"),
    ("study.doses", ["lots"], "study.doses[0] must be a whole number of photons written as an integer"),
    ("study.doses", [1e5], "not 1e5 or 100000.0: it names the stage and the folder dose_<int>"),
    ("study.doses", ["1e5"], "must be a whole number of photons written as an integer"),
    ("study.views", ["x;touch pwned;y"], "study.views[0] must be a name of lowercase letters, digits and _"),
    ("study.views", ["../../tmp/evil"], "study.views[0] must be a name"),
    ("study.views", ["v@1"], "study.views[0] must be a name"),
    ("study.views", [""], "study.views[0] must be a name"),
    ("views.definitions", {"a/b": {"gridsize": 1, "overlap": None}}, "views.definitions (a key) must be a name"),
    ("train.epochs", {"dense ": 3}, "train.epochs (a key) must be a name"),
    ("measured.network_view", "..", "measured.network_view must be a name"),
    ("study.doses", [1000, 1000], "lists a dose twice"),
    ("study.views", ["baseline", "medium"], "unknown view 'medium'"),
    ("study.views", [], "non-empty list of view names"),
    ("simulate.positions_per_split", "many", "must be an integer"),
    ("simulate.positions_per_split", 2.5, "must be an integer"),
    ("simulate.split_axis", "z", "simulate.split_axis must be one of y, x"),
    ("simulate.guard_band_px", 10, "at least the patch size"),
    ("views.probe_power_fraction", 1.5, "must lie in (0, 1)"),
    ("base.object_files.run1084.zoom", 0, "base.object_files.run1084.zoom must be 1 or more"),
    ("base.probe_sha256", "abc", "64 lowercase hex digits"),
    ("views.definitions.dense.gridsize", 0, "gridsize must be 1 or more"),
    ("views.definitions.dense.shape", "square", "unknown key views.definitions.dense.shape"),
    ("simulate.seed", True, "must be an integer"),
    ("train.accelerator", "gpu", "train.accelerator must be one of cpu, cuda"),
    ("train.epochs.dense", DELETE, "train.epochs has no entry for view 'dense'"),
    ("train.epochs.medium", 3, "train.epochs names the unknown view 'medium'"),
    ("train.epochs.sparse", 0, "train.epochs.sparse must be 1 or more"),
    ("train.skips", "yes", "train.skips must be true or false"),
    ("train.inputs", "pixels", "train.inputs must be one of amplitude, backprojection"),
    ("train.augment", "mirror", "train.augment must be one of none, dihedral"),
    ("train.eval_every", -1, "train.eval_every must be 0 (the last epoch only) or more"),
    ("train.eval_every", 1.5, "train.eval_every must be an integer"),
    ("train.object_stride", {}, "train.object_stride must map a dose"),
    ("train.object_stride", {0: 0}, "train.object_stride maps doses ≥ 0 to grids of 1 px per sample or more"),
    ("train.object_stride", {0: 3}, "the object grid of 3 px per sample must divide the canvas = 64"),
    ("train.object_stride", {5000: 1}, "train.object_stride lists no dose at or below 1000 photons per pattern"),
    ("train.support", 0.25, "train.eval_stitch_fraction (0.5) must not exceed train.support (0.25)"),
    ("train.support", 0.0, "train.support must lie in (0, 1]"),
    ("train.learning_rate_final", 0.01, "0 < learning_rate_final ≤ learning_rate"),
    ("train.depth", 7, "the patch size N = 64 must be divisible by 2^depth = 128"),
    ("train.canvas.dense", 60, "view 'dense' (base.patch_size, train.canvas.dense, train.depth, ...) is impossible: the canvas = 60 must be at least the patch size N = 64"),
    ("train.canvas.dense", 70, "the canvas = 70 must be at least the patch size N = 64 and divisible by 2^depth = 4"),
    ("train.canvas.baseline", 80, "view 'baseline' (base.patch_size, train.canvas.baseline, train.depth, ...) is impossible: a one-pattern group works on its patch: the canvas must equal N = 64, got 80"),
    ("infer.stitch_fraction", 0.0, "infer.stitch_fraction must lie in (0, 1]"),
    ("infer.batch", 0, "infer.batch must be 1 or more"),
    ("infer.accelerator", "tpu", "infer.accelerator must be one of cpu, cuda"),
    ("infer.stitch", 0.5, "unknown key infer.stitch"),
    ("train.eval_stitch_fraction", 1.5, "train.eval_stitch_fraction must lie in (0, 1]"),
    ("reconstruct.noise_model", "laplace", "reconstruct.noise_model must be one of gaussian, poisson"),
    ("gradient.levels", [1, 2, 4], "gradient.levels must be distinct factors ≥ 1 from coarse to fine"),
    ("gradient.levels", [], "gradient.levels must be a non-empty list"),
    ("gradient.learning_rate", 0, "gradient.learning_rate must be positive"),
    ("tune.gradient_checkpoints", [30, 90], "tune.gradient_checkpoints must be increasing step counts from 1 to gradient.steps_per_level (60)"),
    ("tune.ptychi_epochs.dense", [40, 20], "tune.ptychi_epochs.dense must be increasing epoch counts"),
    ("tune.ptychi_epochs.sparse", DELETE, "tune.ptychi_epochs has no entry for view 'sparse'"),
    ("tune.ptychi_search.noise_models", [], "tune.ptychi_search.noise_models must be a non-empty list of LSQML likelihoods"),
    ("tune.ptychi_search", {"trials": 4}, "missing key tune.ptychi_search.startup_trials"),
    ("tune.ptychi_search.tv_weight", [3.0, 0.1], "tune.ptychi_search.tv_weight must be [low, high] with low < high"),
    ("tune.ptychi_search.momentum", [0.5], "tune.ptychi_search.momentum must hold reconstruct.momentum"),
    ("tune.ptychi_epochs.dense", [10, 20], "tune.ptychi_epochs.dense must hold reconstruct.epochs.dense"),
    ("tune.heldout_fraction", 0.0, "tune.heldout_fraction must be positive"),
    ("tune.ptychi_search.noise_models", ["huber"], "tune.ptychi_search.noise_models[0] must be one of gaussian, poisson"),
    ("replicate.doses", [500], "replicate.doses lists 500, which is not in study.doses"),
    ("replicate.views", ["medium"], "replicate.views lists 'medium', which is not in study.views"),
    ("replicate.seeds", 0, "replicate.seeds must be 1 or more"),
    ("train.batch_size", 0, "train.batch_size must be 1 or more"),
    ("train.learnig_rate", 0.001, "unknown key train.learnig_rate"),
    ("train", DELETE, "missing key train"),
    ("product.photon_energy_eV", 0.0, "product.photon_energy_eV must be positive"),
    ("product.detector_pixel_m", "75 um", "product.detector_pixel_m must be a number"),
    ("product", DELETE, "missing key product"),
    ("measured.tuning_dose", 500, "measured.tuning_dose 500 is not in study.doses"),
    ("measured.tuning_view", "medium", "measured.tuning_view 'medium' is not in study.views"),
    ("measured.network_view", "wide", "measured.network_view 'wide' is not in study.views"),
    ("measured.crop", 63, "measured.crop must be an even number of detector pixels"),
    ("measured.crop", 66, "measured: the network of view 'dense' on 66-px patterns (measured.crop, train.canvas.dense, train.depth) is impossible: the patch size N = 66 must be divisible by 2^depth = 4"),
    ("measured.data_sha256", "dbce", "measured.data_sha256 must be 64 lowercase hex digits"),
    ("measured.epochs", 0, "measured.epochs must be 1 or more"),
    ("measured", DELETE, "missing key measured"),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v!r}" if v is not DELETE else f"del {k}" for k, v, _ in BAD])
def test_bad_params_are_one_clear_sentence(key, value, message):
    params = default_params()
    _set(params, key, value)
    with pytest.raises(ConfigError) as info:
        config_from_dict(params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_patch_size_must_match_probe(tmp_path):
    from ptychostudy.base import prepare_base

    params = default_params()
    params["base"]["patch_size"] = 128
    params["simulate"]["guard_band_px"] = 128
    params["train"]["canvas"] = {"baseline": 128, "dense": 160, "sparse": 256}
    cfg = config_from_dict(params)  # the probe is only known once its file is read
    with pytest.raises(ConfigError, match=r"base.patch_size = 128 disagrees with the probe: a 64×64 probe zoomed 1× is 64 px"):
        prepare_base(cfg, PROBE, "run1084", OBJECT)


def test_a_dose_must_be_written_as_an_integer():
    """PyYAML reads `1e3` as a string and `1.0e+3` as a float; DVC would name the stage and folder from that
    spelling (`dose_1000.0`) while the code's paths say `dose_1000`: refused, with a sentence."""
    params = default_params()
    for spelling in ("1e3", 1000.0, 1000.5):
        params["study"]["doses"] = [spelling]
        with pytest.raises(ConfigError, match="written as an integer"):
            config_from_dict(params)


def test_duplicate_keys_and_aliases_are_refused_as_dvc_refuses_them(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.replace("  seed: 42 ", "  seed: 42\n  seed: 43 ", 1))
    with pytest.raises(ConfigError, match="the key 'seed' appears twice"):
        load_config(twice)
    section = tmp_path / "section.yaml"
    section.write_text(text + "\nproduct:\n  photon_energy_eV: 1.0\n")
    with pytest.raises(ConfigError, match="the key 'product' appears twice"):
        load_config(section)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n")
    with pytest.raises(ConfigError, match="YAML aliases") as info:
        load_config(bomb)
    assert len(str(info.value)) < 300
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(text.encode("utf-8") + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(binary)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ptychostudy", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_cli_rejects_bad_params_with_exit_2_and_writes_nothing(tmp_path):
    params = default_params()
    params["simulate"]["sed"] = 1
    bad = write_params(tmp_path / "params.yaml", params)
    out = tmp_path / "prepared" / "run1084.npz"
    result = _cli("base", "--params", bad, "--probe", PROBE, "--object-file", f"run1084={OBJECT}", "--out-dir", out.parent, cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key simulate.sed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not out.parent.exists()


def test_cli_patch_size_mismatch_exit_2(tmp_path):
    params = default_params()
    params["base"]["patch_size"] = 32
    params["train"]["canvas"]["baseline"] = 32
    bad = write_params(tmp_path / "params.yaml", params)
    out = tmp_path / "run1084.npz"
    result = _cli("base", "--params", bad, "--probe", PROBE, "--object-file", f"run1084={OBJECT}", "--out-dir", out.parent, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "base.patch_size = 32 disagrees with the probe" in result.stderr
    assert not out.exists()


def test_cli_help_explains_each_phase():
    result = _cli("--help", cwd=ROOT)
    assert result.returncode == 0
    for command in ("base", "simulate", "views", "train", "summarize", "check-params", "check-data"):
        assert command in result.stdout
    result = _cli("simulate", "--help", cwd=ROOT)
    assert "Poisson" in result.stdout and "--dose" in result.stdout
