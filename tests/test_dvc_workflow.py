"""End to end through the `dvc` command line: what each params change reaches (`dvc status`,
`dvc params diff`, one `dvc exp run`), bad params in a repro, and the remote round trip (push, clone, pull, verify, an
artifact by name). On a private copy of the session's one tiny study (`e2e.py`)."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import write_params
from e2e import dvc, lock_outs, run, started, status_stages, study, tiny_params, verify


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    work, env, _ = study(tmp_path_factory)
    return work, env


def params_default(section: str, key: str):
    return tiny_params()[section][key]


def test_a_views_param_change_touches_only_views_and_params_diff_names_it(repo):
    work, env = repo
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "results"], work, env)
    params = tiny_params()
    params["views"]["neighbours"] = 8
    write_params(work / "params.yaml", params)
    try:
        changed = json.loads(dvc("status", "--json", cwd=work, env=env).stdout)
        # the views and the measured network (it forms its groups as Phase D does)
        assert changed and all(name.startswith("views@") or name == "measured_pinn" for name in changed), changed
        assert "measured_pinn" in changed
        diff = dvc("params", "diff", cwd=work, env=env).stdout
        assert "views.neighbours" in diff and "7" in diff and "8" in diff
    finally:
        write_params(work / "params.yaml", tiny_params())


def test_what_each_params_section_touches(repo):
    """Each section reruns only its own phase: training keys the training jobs, the networks' stitching
    (infer.*) only the comparisons and the product files (both infer), pty-chi's keys only pty-chi."""
    work, env = repo
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "results", "--allow-empty"], work, env)
    from ptychostudy import reruns

    pipeline = reruns.stages(work)  # docs/reruns.md's computation, checked here against `dvc status` as well
    cells = {f"{o}-100000-{v}" for o in ("run1084", "siemens_star") for v in ("baseline", "dense", "sparse")}
    spread = {"replicate@run1084-100000-dense"}  # the replicated cell reruns whatever arm a key reaches
    for section, key, value, stages in (
        ("train", "learning_rate", 0.0015, {f"train@{c}" for c in cells} | spread | {"measured_pinn"}),
        ("infer", "stitch_fraction", 0.4,  # the infer stage; the comparison and products read its objects
         {f"{s}@{c}" for c in cells for s in ("infer", "refine")} | spread | {"measured_pinn"}),
        # the configured setting is the tune stage's first trial: its keys reach the searches too
        ("reconstruct", "momentum", 0.5, {f"{s}@{c}" for c in cells for s in ("reconstruct", "tune")} | spread),
        ("gradient", "learning_rate", 0.04, {f"{s}@{c}" for c in cells for s in ("tune", "gradient", "warmstart")} | spread),
        ("gradient", "threads", 2, {f"gradient@{c}" for c in cells} | spread),  # the tune stage runs on tune.threads
        ("tune", "threads", 2, {f"tune@{c}" for c in cells}),
        ("refine", "learning_rate", 0.002, {f"refine@{c}" for c in cells} | spread),  # the replicates refine too
        ("refine", "steps", {"baseline": 4, "dense": 3, "sparse": 4},
         {"refine@run1084-100000-dense", "refine@siemens_star-100000-dense"} | spread),
        ("compare", "frc_apodization_px", 3.0, {f"{s}@{c}" for c in cells for s in ("compare", "refine", "warmstart")}
         | spread | {"measured_compare"}),
        # the tuned pty-chi run and the gradient arm's keep their objects at the checkpoints: the warmstart stage's blank starts
        ("warmstart", "checkpoints", [0.0, 0.5, 1.0],
         {f"{s}@{c}" for c in cells for s in ("warmstart", "reconstruct_tuned", "gradient")}),
        ("replicate", "seeds", 2, spread | {"summarize"}),
        ("replicate", "noise_redraws", 2, spread | {"summarize"}),
        ("replicate", "threads", 2, spread | {"summarize"}),  # the summary reads the section (its cells)
        ("measured", "epochs", 2, {"measured_pinn"}),
        ("measured", "batch_size", 32, {"measured_ptychi@A", "measured_ptychi@B"}),
    ):
        params = tiny_params()
        params[section][key] = value
        write_params(work / "params.yaml", params)
        try:
            leaves = [f"{section}.{key}.{k}" for k, v in value.items() if v != params_default(section, key)[k]] \
                if isinstance(value, dict) else [f"{section}.{key}"]  # what DVC compares: the declared leaves
            computed = set().union(*(reruns.stale_for_key(pipeline, leaf) for leaf in leaves))
            assert status_stages(work, env) == stages == computed, (section, key)
            if not isinstance(value, dict) and section != "train":
                continue  # `dvc params diff` names a scalar key alike for every section: shown for train's
            diff = dvc("params", "diff", cwd=work, env=env).stdout
            changed = {f"{key}.{k}": v for k, v in value.items() if v != params_default(section, key)[k]} \
                if isinstance(value, dict) else {key: value}  # a per-view key: DVC names the changed leaf
            assert all(f"{section}.{k}" in diff and str(v) in diff for k, v in changed.items()), diff
        finally:
            write_params(work / "params.yaml", tiny_params())
    assert status_stages(work, env) == set()


def _changed(value):
    """Another value of a params key's type (`dvc status` compares values; no stage runs to validate it)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return value + value[-1:]
    return f"{value}x"


def test_the_computed_rerun_table_agrees_with_dvc_status_for_the_other_sections_a_template_key_and_files(repo):
    """docs/reruns.md's stale sets (`ptychostudy reruns`, from DVC's index) against real `dvc status`, beside the
    sections the test above covers: the first plain key of the other params sections, a key dvc.yaml interpolates,
    and edits of four input files."""
    from ptychostudy import reruns

    work, env = repo
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "results", "--allow-empty"], work, env)
    pipeline = reruns.stages(work)
    params = tiny_params()
    for section in ("base", "simulate", "views", "product"):
        key = reruns.leaf_keys({section: params[section]})[0]
        edited = tiny_params()
        tree = edited
        *parents, last = key.split(".")
        for part in parents:
            tree = tree[part]
        tree[last] = _changed(tree[last])
        write_params(work / "params.yaml", edited)
        try:
            predicted = reruns.stale_for_key(pipeline, key)
            assert predicted and status_stages(work, env) == predicted, key
        finally:
            write_params(work / "params.yaml", tiny_params())
    edited = tiny_params()
    edited["measured"]["network_view"] = "baseline"
    write_params(work / "params.yaml", edited)
    try:
        predicted, _, _ = reruns.stale_after_template_edit(work, pipeline, "measured.network_view", "baseline")
        assert status_stages(work, env) == predicted == {"measured_pinn"}
    finally:
        write_params(work / "params.yaml", tiny_params())
    for path in ("src/ptychostudy/metrics.py", "src/ptychostudy/model.py", "src/ptychostudy/tune.py",
                 "data/base/siemens_star/siemens-star-small.npz.bz2"):
        old = (work / path).read_bytes()
        (work / path).write_bytes(old + b"\n# an edit\n")
        try:
            predicted = reruns.stale_for_file(pipeline, path)
            assert predicted and status_stages(work, env) == predicted, path
        finally:
            (work / path).write_bytes(old)
    assert status_stages(work, env) == set()


def test_an_experiment_reruns_only_the_stages_its_params_reach(repo):
    """`dvc exp run -S` on one view's epochs: that view's training jobs, what reads their bundles (refinement,
    inference, and from its objects the network-started solvers, the comparisons and product files) and the summary run; nothing else (not the
    other views' networks or comparisons, not pty-chi). What the other sections reach is checked above with
    `dvc status`. A bundle records only the params its stage declares: in the experiment's workspace a forced
    rerun of another view's training leaves dvc.lock byte-identical."""
    work, env = repo
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "results", "--allow-empty"], work, env)
    try:
        result = dvc("exp", "run", "-S", "train.epochs.dense=1", cwd=work, env=env)
        ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
        lock = (work / "dvc.lock").read_bytes()
        forced = dvc("repro", "-f", "-s", "--no-run-cache", "train@run1084-100000-sparse", cwd=work, env=env)
        assert "Running stage 'train@run1084-100000-sparse'" in forced.stdout
        assert (work / "dvc.lock").read_bytes() == lock
    finally:
        run(["git", "checkout", "--", "."], work, env)  # the experiment is kept by `dvc exp`, not in the workspace
        dvc("checkout", cwd=work, env=env)
    cell = {f"{s}@{o}-100000-dense" for o in ("run1084", "siemens_star")  # the dense view of both objects
            for s in ("train", "train_figure", "refine", "infer", "warmstart", "compare", "product")}
    assert ran == cell | {"replicate@run1084-100000-dense", "summarize"}, ran
    assert status_stages(work, env) == set()


def test_bad_params_fail_the_repro_and_keep_previous_outputs(repo):
    work, env = repo
    target = work / "data/simulated/run1084/dose_100000/patched_train.npz"
    before = target.read_bytes()
    params = tiny_params()
    params["simulate"]["seed"] = 7
    params["simulate"]["sede"] = 7
    write_params(work / "params.yaml", params)
    try:
        result = dvc("repro", "simulate@run1084-100000", cwd=work, env=env, check=False)
        assert result.returncode != 0
        assert "unknown key simulate.sede" in result.stderr + result.stdout
    finally:
        write_params(work / "params.yaml", tiny_params())
    # DVC removes a stage's outputs before running it: the cache restores the data and git the
    # (git-tracked) reports, byte for byte
    dvc("checkout", cwd=work, env=env)
    run(["git", "checkout", "--", "reports"], work, env)
    assert target.read_bytes() == before
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def _push_to_a_folder_remote(work, env, tmp_path):
    """The study's outputs pushed to a new folder remote (the default remote `store`); the remote's path."""
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "-f", "store", str(remote), cwd=work, env=env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "remote", "--allow-empty"], work, env)
    dvc("push", cwd=work, env=env)
    return remote


def _clone(work, env, tmp_path):
    """A fresh git clone of the study and its environment (a DVC site cache of its own)."""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(work), str(clone)], tmp_path, env)
    return clone, {**env, "DVC_SITE_CACHE_DIR": str(tmp_path / "clone-site-cache")}


def test_push_then_pull_on_a_fresh_clone_restores_every_artefact(repo, tmp_path):
    """Remote round trip: push to a folder remote, clone, pull; byte-identical, nothing runs, verify passes."""
    work, env = repo
    _push_to_a_folder_remote(work, env, tmp_path)
    clone, clone_env = _clone(work, env, tmp_path)
    assert not list((clone / "data/models").rglob("wts.h5.zip"))  # git brings DVC's .gitignore files only
    missing = verify(clone, clone_env)
    assert missing.returncode == 1 and "missing: data/models/run1084/dose_100000/dense/wts.h5.zip" in missing.stdout
    dvc("pull", cwd=clone, env=clone_env)
    outs = lock_outs(work)
    for path, md5 in outs.items():
        target = clone / path
        if target.is_file():
            assert hashlib.md5(target.read_bytes()).hexdigest() == md5, path
            assert target.read_bytes() == (work / path).read_bytes(), path
    assert all((clone / p).exists() for p in outs)
    assert json.loads(dvc("status", "--json", cwd=clone, env=clone_env).stdout) == {}
    result = dvc("repro", cwd=clone, env=clone_env)
    assert "Running stage" not in result.stdout
    # a model fetched by its artifact name (dvc.yaml's artifacts block) and registered version (a GTO tag, as
    # `gto register` writes it), from the repository and its remote
    run(["git", "tag", "-a", "pinn-run1084-100000-dense@v0.1.0", "-m", "Registering artifact pinn-run1084-100000-dense version v0.1.0"],
         work, env)
    got = tmp_path / "fetched" / "wts.h5.zip"
    dvc("artifacts", "get", str(work), "pinn-run1084-100000-dense", "-o", str(got), cwd=tmp_path, env=clone_env)
    assert got.read_bytes() == (work / "data/models/run1084/dose_100000/dense/wts.h5.zip").read_bytes()
    ok = verify(clone, clone_env)
    assert ok.returncode == 0 and "6 bundles, 0 problems" in ok.stdout, ok.stdout


def test_make_study_pulls_what_the_remote_holds_and_computes_the_rest(repo, tmp_path):
    """`make study` with a DVC remote: it pulls first, then computes only what the remote lacks (here one
    reconstruction, taken out of the remote, and what reads it); verify passes and nothing stays stale. The
    recipe runs as written in the Makefile (`make -o install`: the test's environment stands in for .venv)."""
    work, env = repo
    remote = _push_to_a_folder_remote(work, env, tmp_path)
    gone = "data/reconstruct/run1084/dose_100000/sparse/ptychi.npz"
    md5 = lock_outs(work)[gone]
    (remote / "files" / "md5" / md5[:2] / md5[2:]).unlink()  # the remote lacks this one output
    clone, clone_env = _clone(work, env, tmp_path)
    fresh = verify(clone, clone_env)
    assert fresh.returncode == 1 and "run `dvc pull` to fetch them from the DVC remote store" in fresh.stdout
    made = run(["make", "-o", "install", "study"], clone, clone_env)
    assert "pulling what the DVC remote holds" in made.stdout
    ran = started(made.stdout)
    assert "reconstruct@run1084-100000-sparse" in ran and not any(name.startswith(("train@", "tune@", "simulate@")) for name in ran), ran
    assert (clone / gone).read_bytes() == (work / gone).read_bytes()
    assert json.loads(dvc("status", "--json", cwd=clone, env=clone_env).stdout) == {}
    assert "0 problems" in made.stdout
