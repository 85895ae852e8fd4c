"""Hostile and mistaken input, as a tester or a careless user would give it, to the five commands people run on
files: check-params, check-data, check-bundle, verify and run. Every case asserts exit code 2, one sentence on
stderr (one line, under 300 characters, no traceback) that names the key or the file, and that nothing was
written. The commands run in this process (`cli.main`, the code the `ptychostudy` command runs), except the
decompression bombs, which run in a child process under a memory limit."""

from __future__ import annotations

import bz2
import copy
import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, default_params

MAX_SENTENCE = 300


def _run(argv, capsys, cwd: Path):
    """(exit code, stderr) of ``ptychostudy argv`` in ``cwd``, and the files it left there."""
    from ptychostudy.cli import main

    before = {p for p in cwd.rglob("*")}
    old = Path.cwd()
    os.chdir(cwd)
    try:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    return code, err, {p for p in cwd.rglob("*")} - before


def _refused(argv, capsys, cwd: Path, *words: str):
    code, err, written = _run(argv, capsys, cwd)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and len(lines[0]) < MAX_SENTENCE and "Traceback" not in err, err
    assert all(word in err for word in words), err
    assert not {p for p in written if "__pycache__" not in p.parts and ".dvc" not in p.parts}, written


# --- check-params ------------------------------------------------------------------------------------------------

def _set(params, dotted, value):
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[leaf] = value
    return params


NAMES = ["x;touch pwned;y", "a/b", "..", "../../tmp/evil", "", "dense ", "v@1", "Dense", "1view", "a b", "$(id)",
         "`id`", "v|w", "a" * 40, "naïve", "v\nw"]
PARAMS_CASES = []
for i, name in enumerate(NAMES):  # a name that becomes a path, a stage name and a shell word
    PARAMS_CASES.append((f"view name {name!r} in study.views", lambda p, n=name: _set(p, "study.views", ["baseline", n]),
                         "study.views[1] must be a name"))
    PARAMS_CASES.append((f"view name {name!r} as a definition", lambda p, n=name: p["views"]["definitions"].update(
        {n: {"gridsize": 1, "overlap": None}}), "(a key) must be a name"))
for key in ("train.epochs", "train.canvas", "reconstruct.epochs", "refine.steps", "tune.ptychi_epochs"):
    PARAMS_CASES.append((f"bad view key under {key}", lambda p, k=key: _set(p, k, {**_get(p, k), "x;y": _first(p, k)}),
                         f"{key} (a key) must be a name"))
for spelling in ("1e5", 1e5, 100000.0, "100000", True, None, [100000], {"d": 1}, -5, 0):
    PARAMS_CASES.append((f"dose {spelling!r}", lambda p, s=spelling: _set(p, "study.doses", [1000, s]), "study.doses[1]"))
for key, value in (("train.epochs.dense", 100_000_000), ("train.threads", 4096), ("train.steps_per_epoch", 10**9),
                   ("train.batch_size", 10**7), ("simulate.positions_per_split", 10**8), ("refine.steps.dense", 10**9),
                   ("reconstruct.epochs.dense", 10**7), ("reconstruct.threads", 1000), ("gradient.steps_per_level", 10**8),
                   ("gradient.batch", 10**8), ("infer.batch", 10**6), ("tune.threads", 999), ("measured.epochs", 10**7),
                   ("replicate.seeds", 1000), ("views.neighbours", 1000), ("train.filters", 10**5), ("train.depth", 40)):
    PARAMS_CASES.append((f"{key} too large", lambda p, k=key, v=value: _set(p, k, v), f"{key} must be at most"))
for key, value in (("simulate.seed", "seven"), ("train.learning_rate", "fast"), ("train.skips", "yes"),
                   ("infer.phase_sync", 1), ("compare.max_shift_px", [4]), ("product.photon_energy_eV", "8.8 keV"),
                   ("base.probe_sha256", 12), ("train.object_stride", {"a": 1}), ("train.object_stride", {0: "eight"}),
                   ("gradient.levels", "8,4"), ("refine.checkpoints", [0, "half", 1]), ("tune.ptychi_grid", {"a": 1}),
                   ("views.definitions", []), ("study", []), ("train", "fast"), ("measured.crop", 64.5),
                   ("train.learning_rate", float("nan")), ("train.learning_rate", float("inf"))):
    PARAMS_CASES.append((f"{key} = {value!r}", lambda p, k=key, v=value: _set(p, k, v), key.split(".")[0]))
for key in ("simulate.seed", "train.epochs", "views", "measured", "study.doses", "compare.frc_apodization_px"):
    PARAMS_CASES.append((f"{key} missing", lambda p, k=key: _pop(p, k), "missing key"))
for key in ("simulate.sede", "train.learnig_rate", "extra", "views.definitions.dense.shape", "infer.stitch"):
    PARAMS_CASES.append((f"unknown {key}", lambda p, k=key: _set(p, k, 1), "unknown key"))


def _get(params, dotted):
    node = params
    for key in dotted.split("."):
        node = node[key]
    return node


def _first(params, dotted):
    return next(iter(_get(params, dotted).values()))


def _pop(params, dotted):
    *parents, leaf = dotted.split(".")
    del (_get(params, ".".join(parents)) if parents else params)[leaf]
    return params


class _Plain(yaml.SafeDumper):
    """Writes a value met twice in full (never as an alias, which params refuse)."""

    def ignore_aliases(self, data):
        return True


@pytest.mark.parametrize("name,mutate,message", PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_check_params_refuses(name, mutate, message, tmp_path, capsys):
    params = copy.deepcopy(default_params())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.dump(params, Dumper=_Plain, sort_keys=False, allow_unicode=True))
    _refused(["check-params", "--params", path.name], capsys, tmp_path, "params.yaml", message)


TEXT_CASES = {
    "empty file": (b"", "is empty"),
    "a list, not sections": (b"- 1\n- 2\n", "must be a mapping of sections"),
    "a scalar": (b"42\n", "must be a mapping of sections"),
    "not UTF-8": (None, "is not UTF-8 text"),
    "binary": (bytes(range(256)), "params.yaml"),
    "duplicate key": (None, "appears twice"),
    "duplicate section": (None, "the key 'product' appears twice"),
    "alias bomb": (b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                   b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n", "YAML aliases"),
    "merge key": (b"base: &b {probe_zoom: 1}\nsimulate:\n  <<: *b\n", "YAML aliases"),
    "not YAML": (b"study: [1, 2\n", "is not valid YAML"),
    "tabs": (b"study:\n\tdoses: [1]\n", "is not valid YAML"),
    "python tag": (b"study: !!python/object/apply:os.system ['touch pwned']\n", "is not valid YAML"),
    "a folder": (None, "does not exist"),
    "missing": (None, "does not exist"),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_check_params_refuses_a_broken_file(case, tmp_path, capsys):
    data, message = TEXT_CASES[case]
    text = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    if case == "not UTF-8":
        data = text.encode() + b"# caf\xe9\n"
    elif case == "duplicate key":
        data = text.replace("  seed: 42 ", "  seed: 42\n  seed: 43 ", 1).encode()
    elif case == "duplicate section":
        data = (text + "\nproduct:\n  photon_energy_eV: 1.0\n").encode()
    if case == "a folder":
        path.mkdir()
    elif case != "missing":
        path.write_bytes(data)
    _refused(["check-params", "--params", path.name], capsys, tmp_path, message)
    assert not (tmp_path / "pwned").exists()


# --- check-data -------------------------------------------------------------------------------------------------

def _valid_data() -> dict:
    from ptychostudy.dataset import build_arrays

    rng = np.random.default_rng(1)
    n, size = 6, 16
    return build_arrays(diffraction=rng.random((n, size, size)) + 0.1, xcoords=rng.uniform(10, 30, n),
                        ycoords=rng.uniform(10, 30, n), scan_index=np.arange(n), probe=np.ones((size, size)),
                        obj=np.ones((48, 48)), metadata={"dose": 1000})


def _npz(arrays: dict, compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _forged_header() -> bytes:
    """An npz whose .npy header claims a terabyte array while the member holds 128 bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (2**37,)
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    member.write(b"\0" * 128)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("diffraction.npy", member.getvalue())
    return buffer.getvalue()


def _with(**changes) -> bytes:
    arrays = _valid_data()
    arrays.update(changes)
    return _npz({k: v for k, v in arrays.items() if v is not None})


DATA_CASES = {
    "a .npy file": (lambda: (lambda b: (np.save(b, np.zeros(3)), b.getvalue())[1])(io.BytesIO()), "a single .npy array"),
    "text": (lambda: b"hello, I am not an archive\n", "not a zip archive"),
    "bz2": (lambda: bz2.compress(_npz(_valid_data())), "bz2-compressed"),
    "gzip": (lambda: gzip.compress(_npz(_valid_data())), "gzip-compressed"),
    "HDF5": (lambda: b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "an HDF5 file"),
    "truncated": (lambda: _npz(_valid_data())[:500], "truncated or corrupt"),
    "empty": (lambda: b"", "not a zip archive"),
    "forged header": (_forged_header, "describes"),
    "a non-array member": (lambda: (lambda b: (zipfile.ZipFile(b, "w").writestr("x.txt", b"hi"), b.getvalue())[1])(io.BytesIO()),
                           "not a readable .npz"),
    "pickled object array": (lambda: _with(objectGuess=np.array([{"a": 1}], dtype=object)), "pickled"),
    "empty metadata": (lambda: _with(_metadata=np.array("{}")), "lacks contract_version"),
    "metadata not JSON": (lambda: _with(_metadata=np.array("{nope")), "not valid JSON"),
    "metadata a list": (lambda: _with(_metadata=np.array("[1, 2]")), "must be a JSON object"),
    "metadata missing": (lambda: _with(_metadata=None), "missing key '_metadata'"),
    "positions far outside": (lambda: _with(xcoords=np.full(6, 1e6)), "outside the object"),
    "negative positions": (lambda: _with(ycoords=np.full(6, -50.0)), "outside the object"),
    "all-zero patterns": (lambda: _with(diffraction=np.zeros((6, 16, 16), np.float32)), "every diffraction pattern is zero"),
    "a (0, 0) object": (lambda: _with(objectGuess=np.zeros((0, 0), np.complex64)), "smaller than one"),
    "an object smaller than a patch": (lambda: _with(objectGuess=np.ones((8, 8), np.complex64)), "smaller than one"),
    "NaN pattern": (lambda: _with(diffraction=np.full((6, 16, 16), np.nan, np.float32)), "NaN or Inf"),
    "negative amplitude": (lambda: _with(diffraction=-np.ones((6, 16, 16), np.float32)), "negative"),
    "wrong dtype": (lambda: _with(diffraction=np.ones((6, 16, 16), np.float64)), "dtype"),
    "missing key": (lambda: _with(xcoords=None), "missing key 'xcoords'"),
    "unexpected key": (lambda: _with(extra=np.zeros(2)), "unexpected key 'extra'"),
    "no patterns": (lambda: _with(diffraction=np.zeros((0, 16, 16), np.float32)), "0 diffraction patterns"),
    "non-square probe": (lambda: _with(probeGuess=np.ones((16, 8), np.complex64)), "must be square"),
    "groups out of range": (lambda: _with(groups=np.array([[0, 99]], np.int64)), "outside"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_check_data_refuses(case, tmp_path, capsys):
    build, message = DATA_CASES[case]
    path = tmp_path / "data.npz"
    path.write_bytes(build())
    _refused(["check-data", path.name], capsys, tmp_path, "data.npz", message)


def test_check_data_names_a_folder_and_a_missing_file(tmp_path, capsys):
    (tmp_path / "folder.npz").mkdir()
    _refused(["check-data", "folder.npz"], capsys, tmp_path, "folder.npz: a folder")
    _refused(["check-data", "none.npz"], capsys, tmp_path, "none.npz: no such file")


def test_a_valid_data_file_passes(tmp_path, capsys):
    path = tmp_path / "data.npz"
    path.write_bytes(_npz(_valid_data()))
    code, err, _ = _run(["check-data", path], capsys, tmp_path)
    assert code == 0, err


# --- check-bundle -----------------------------------------------------------------------------------------------

def _bundle_cases():
    from test_bundle import CASES

    cases = {name: (build, message) for name, (build, message) in CASES.items()}
    cases["text"] = (lambda: b"not a bundle\n", "not a readable zip")
    cases["empty"] = (lambda: b"", "not a readable zip")
    cases["an npz"] = (lambda: _npz(_valid_data()), "member")
    return cases


BUNDLE_CASES = _bundle_cases()


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_check_bundle_refuses(case, tmp_path, capsys):
    build, message = BUNDLE_CASES[case]
    path = tmp_path / "wts.h5.zip"
    path.write_bytes(build())
    _refused(["check-bundle", path.name], capsys, tmp_path, "wts.h5.zip", message)
    assert not (tmp_path.parent / "evil.py").exists()


def test_check_bundle_names_a_folder_and_a_missing_file(tmp_path, capsys):
    (tmp_path / "dir.h5.zip").mkdir()
    _refused(["check-bundle", "dir.h5.zip"], capsys, tmp_path, "dir.h5.zip: a folder")
    _refused(["check-bundle", "none.h5.zip"], capsys, tmp_path, "none.h5.zip: no such bundle")


# --- decompression bombs, under a memory limit ------------------------------------------------------------------

LIMIT = 3 << 30  # address space of the child: the command plus torch fit, a 3-4 GiB inflation does not
BOMB = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from ptychostudy.cli import main
code = main(sys.argv[1:])
print("peak_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
raise SystemExit(code)
"""


def _zip_of_zeros(name: str, size: int, header: bytes = b"", others: dict | None = None) -> bytes:
    """A zip with ``others`` stored and one member ``name`` of ``header`` then ``size`` zero bytes, deflated and
    written in chunks: a few megabytes on disk."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for other, data in (others or {}).items():
            zf.writestr(other, data)
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as fh:
            fh.write(header)
            chunk = b"\0" * (64 << 20)
            for start in range(0, size, len(chunk)):
                fh.write(chunk[: min(len(chunk), size - start)])
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """An npz whose 3 MB inflate to 3 GiB (refused by its inflation ratio), and a bundle whose 2 MB inflate to 2 GiB
    (refused by its member size cap): both before anything is inflated."""
    from test_bundle import _valid_members

    folder = tmp_path_factory.mktemp("bombs")
    size = 3 << 30
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (size // 4,)})
    (folder / "bomb.npz").write_bytes(_zip_of_zeros("diffraction.npy", size, header.getvalue()))
    (folder / "wts.h5.zip").write_bytes(_zip_of_zeros("weights.h5", 2 << 30, others={
        "description.json": _valid_members()["description.json"]}))
    return folder


@pytest.mark.parametrize("command,name,message", [("check-data", "bomb.npz", "would inflate"),
                                                   ("check-bundle", "wts.h5.zip", "bytes, over the")])
def test_a_decompression_bomb_is_refused_before_it_is_inflated(bombs, command, name, message):
    path = bombs / name
    assert path.stat().st_size < 16 << 20  # megabytes on disk, gigabytes inflated
    result = subprocess.run([sys.executable, "-c", BOMB.format(limit=LIMIT), command, name], capture_output=True,
                            text=True, cwd=bombs)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("peak_kib")]
    peak = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak_kib"))
    print(f"{command} {name}: peak {peak / 1024:.0f} MiB")
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and message in lines[0] and name in lines[0] and len(lines[0]) < MAX_SENTENCE, lines
    assert peak < 1 << 20  # KiB: under a GiB, the inflation never happened


# --- verify -----------------------------------------------------------------------------------------------------

def _verify_files(tmp_path, lock=None, manifest=None):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    bundle = tmp_path / "data/models/dose_1000/dense/wts.h5.zip"
    bundle.parent.mkdir(parents=True)
    bundle.write_bytes(b"bundle")
    import hashlib

    good_lock = {"schema": "2.0", "stages": {"train@1000-dense": {"outs": [
        {"path": "data/models/dose_1000/dense/wts.h5.zip", "md5": hashlib.md5(b"bundle").hexdigest(), "size": 6}]}}}
    good_manifest = {"artifact_dir": "data/models", "skipped": [], "jobs": [
        {"bundle": "dose_1000/dense/wts.h5.zip", "sha256": hashlib.sha256(b"bundle").hexdigest(), "bytes": 6}]}
    (tmp_path / "dvc.lock").write_bytes(lock if isinstance(lock, bytes) else yaml.safe_dump(lock or good_lock).encode())
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/training_manifest.json").write_bytes(
        manifest if isinstance(manifest, bytes) else json.dumps(manifest or good_manifest).encode())
    return good_lock, good_manifest


VERIFY_CASES = {
    "lock not UTF-8": ({"lock": b"stages:\n  a: \xe9\n"}, "dvc.lock: not UTF-8"),
    "lock not YAML": ({"lock": b"stages: [\n"}, "dvc.lock: not a readable dvc.lock"),
    "lock without stages": ({"lock": {"schema": "2.0"}}, "dvc.lock: not a readable dvc.lock"),
    "lock a list": ({"lock": [1, 2]}, "dvc.lock: not a readable dvc.lock"),
    "lock entry without md5": ({"lock": {"stages": {"t": {"outs": [{"path": "data/models/dose_1000/dense/wts.h5.zip"}]}}}},
                               "has no md5"),
    "lock entry without path": ({"lock": {"stages": {"t": {"outs": [{"md5": "0" * 32}]}}}}, "not a readable dvc.lock"),
    "manifest not UTF-8": ({"manifest": b"{\"a\": \"\xe9\"}"}, "training_manifest.json: not UTF-8"),
    "manifest not JSON": ({"manifest": b"{nope"}, "not a readable training manifest"),
    "manifest a list": ({"manifest": [1]}, "not a readable training manifest"),
    "manifest without jobs": ({"manifest": {"artifact_dir": "data/models", "skipped": []}}, "not a readable training manifest"),
    "manifest job without bytes": ({"manifest": {"artifact_dir": "data/models", "skipped": [], "jobs": [
        {"bundle": "dose_1000/dense/wts.h5.zip", "sha256": "0" * 64}]}}, "lacks its sha256 or bytes"),
    "manifest job without sha256": ({"manifest": {"artifact_dir": "data/models", "skipped": [], "jobs": [
        {"bundle": "dose_1000/dense/wts.h5.zip", "bytes": 6}]}}, "lacks its sha256 or bytes"),
    "manifest skipped without dose": ({"manifest": {"artifact_dir": "data/models", "jobs": [], "skipped": [{"view": "x"}]}},
                                      "not a readable training manifest"),
}


@pytest.mark.parametrize("case", list(VERIFY_CASES))
def test_verify_refuses(case, tmp_path, capsys):
    files, message = VERIFY_CASES[case]
    _verify_files(tmp_path, **files)
    _refused(["verify"], capsys, tmp_path, message)


def test_verify_outside_the_project_names_the_cause(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    _refused(["verify"], capsys, tmp_path / "sub", "no dvc.yaml here", "project's root")


def test_verify_on_the_files_it_trusts_passes(tmp_path, capsys):
    _verify_files(tmp_path)
    code, err, _ = _run(["verify"], capsys, tmp_path)
    assert code == 0, err


# --- run --------------------------------------------------------------------------------------------------------

RUN_CASES = {
    "a mistyped stage": (["tranin"], "'tranin' is no stage"),
    "a mistyped item": (["train@1000-dens"], "'train@1000-dens' is no stage"),
    "an output that is none": (["data/nothing.npz"], "is no stage or output"),
    "jobs 0": (["--jobs", "0"], "jobs"),
    "an unknown executor": (["--executor", "mainframe"], "invalid choice"),
    "a missing config": (["--config", "none.yaml"], "none.yaml"),
    "a config of bad keys": (["--config", "bad.yaml"], "bad.yaml"),
    "a config not UTF-8": (["--config", "latin.yaml"], "latin.yaml"),
    "a config not YAML": (["--config", "broken.yaml"], "broken.yaml"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_refuses(case, tmp_path, capsys, monkeypatch):
    args, message = RUN_CASES[case]
    work = tmp_path / "w"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        (work / name).write_bytes((ROOT / name).read_bytes())
    (work / ".dvc").mkdir()
    (work / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    (work / "bad.yaml").write_text("jobz: 2\n")
    (work / "latin.yaml").write_bytes(b"jobs: 2 # caf\xe9\n")
    (work / "broken.yaml").write_text("jobs: [\n")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    code, err, written = _run(["run", *args], capsys, work)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and len(lines[-1]) < MAX_SENTENCE, err
    assert message in err, err
    assert not {p for p in written if ".dvc" not in p.parts}, written


def test_the_catalogue_is_at_least_150_cases():
    count = (len(PARAMS_CASES) + len(TEXT_CASES) + len(DATA_CASES) + 2 + len(BUNDLE_CASES) + 2 + 2
             + len(VERIFY_CASES) + 1 + len(RUN_CASES))
    assert count >= 150, count


# --- names that reach a shell command or a path -----------------------------------------------------------------

def test_no_accepted_params_put_a_foreign_character_into_a_stage_command(tmp_path):
    """DVC interpolates view names and doses unquoted into stage commands and paths. Every hostile name is refused
    by the params loader; for names it accepts, DVC's own rendering of the pipeline (its API, as `dvc repro` reads
    it) holds nothing but the name pattern in each name position."""
    import re

    from dvc.repo import Repo

    from ptychostudy.config import ConfigError, config_from_dict
    from ptychostudy.params import NAME

    for name in NAMES:
        params = copy.deepcopy(default_params())
        params["views"]["definitions"][name] = {"gridsize": 1, "overlap": None}
        params["study"]["views"] = ["baseline", name]
        with pytest.raises(ConfigError):
            config_from_dict(params)
    for dose in ("1e5", 1e5, 100000.0, "1000;id"):
        params = copy.deepcopy(default_params())
        params["study"]["doses"] = [dose]
        with pytest.raises(ConfigError):
            config_from_dict(params)
    accepted = ["v2", "dense_b", "a" * 32]
    params = copy.deepcopy(default_params())
    for name in accepted:
        params["views"]["definitions"][name] = {"gridsize": 2, "overlap": 0.5}
        for key in ("train.epochs", "train.canvas", "reconstruct.epochs", "refine.steps", "tune.ptychi_epochs"):
            _get(params, key)[name] = _get(params, key)["dense"]
    params["study"]["views"] = ["baseline", "dense", *accepted]
    config_from_dict(params)  # accepted
    (tmp_path / "params.yaml").write_text(yaml.dump(params, Dumper=_Plain, sort_keys=False))
    (tmp_path / "dvc.yaml").write_bytes((ROOT / "dvc.yaml").read_bytes())
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    stages = Repo(str(tmp_path)).index.stages
    views = [s for s in stages if s.name.startswith("views@")]
    assert {s.name.rsplit("-", 1)[1] for s in views} == {"baseline", "dense", *accepted}
    for stage in stages:
        words = stage.cmd.split()
        for flag in ("--view", "--dose", "--half"):
            if flag in words:
                value = words[words.index(flag) + 1]
                assert re.fullmatch(r"[0-9]+|[A-B]", value) or NAME.fullmatch(value), (stage.name, value)
        assert re.fullmatch(r"[A-Za-z0-9_@.\-/ =]+", stage.cmd), stage.cmd


@pytest.mark.parametrize("argv,message", [(["--bogus"], "unknown option --bogus"), (["tran"], "did you mean train"),
                                          (["x;id"], "unknown command 'x;id'"), ([], "usage: ptychostudy")])
def test_the_command_for_people_refuses_a_mistyped_word(argv, message, tmp_path, capsys):
    code, err, written = _run(argv, capsys, tmp_path)
    assert code == 2 and message in err and "Traceback" not in err and not written, err
