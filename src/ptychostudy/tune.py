"""The tune stage: the tuned iterative arms' settings, selected on each view's *train* split under two protocols.

The fairness protocol (README "A fair study"): no setting of any arm is chosen from test-split scores. This
stage reads only the view's train file (its ``dvc.yaml`` entry depends on nothing else of the view, and a test
runs it with the test file absent). A fixed seeded part of the train positions (``tune.heldout_fraction``) is
held out of every fit, and every candidate is scored by two criteria:

* **calibration** — phase Pearson r against the train region's truth (featured region, the study's one scoring
  path ``metrics.score_arm``): a known sample, as a beamline calibrates; arms ``ptychi_tuned`` and ``gradient``;
* **no calibration** — the Poisson negative log-likelihood of the held-out patterns, predicted by the solver's
  own forward model (``forward.py``) from its reconstruction of the rest: no truth at all; arms
  ``ptychi_heldout`` and ``gradient_heldout``.

pty-chi LSQML is searched with Optuna, one search per protocol, each driven by its own criterion only (seeded
TPE sampler, trials run one after another so the search is deterministic, the median pruner stopping poor
settings at the epoch checkpoints ``tune.ptychi_epochs.<view>``, whose last is the configured arm's epochs).
The first trial of both is the configured arm's setting (``reconstruct.*``), so the pick's criterion is never
worse than the configured arm's. A setting already run in the other search is not run again (the runs are
deterministic). The gradient solver runs once through all of ``gradient.levels``, scored after each of
``tune.gradient_checkpoints`` steps of every level; each protocol picks its stop.

Everything runs on ``tune.threads`` torch threads. Both picks, every trial and every score go to
``reports/tuning/<cell>.json`` (its figure: stage ``tune_figure``); the ``reconstruct_tuned`` and ``gradient``
stages read it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ptychostudy import gradient_solver, layout, stage
from ptychostudy.dataset import Split
from ptychostudy.forward import PREDICTORS
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.metrics import regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.reconstruct import PtychiSetting, ReconstructParams
from ptychostudy.params.tune import TuneParams
from ptychostudy.ptychi_solver import reconstruct

SPLIT = "train"
CRITERION = {
    "calibration_phase_r": "phase Pearson r in the featured region of the view's train split, against its truth "
                           "(a known calibration sample; metrics.score_arm); higher is better",
    "heldout_nll": "Poisson negative log-likelihood per detector pixel (without log k!) of the held-out train "
                   "patterns, predicted by the solver's own forward model from its reconstruction of the other "
                   "positions (no truth); lower is better",
}
PROTOCOLS = {  # protocol -> (the row's score it selects on, Optuna's direction, the pick's key in the record)
    "calibration": ("phase_r", "maximize", "selected"),
    "no_calibration": ("heldout_nll", "minimize", "selected_heldout"),
}
ARMS = {"ptychi": {"calibration": "ptychi_tuned", "no_calibration": "ptychi_heldout"},
        "gradient": {"calibration": "gradient", "no_calibration": "gradient_heldout"}}


def holdout(split: Split, fraction: float, seed: int) -> tuple[Split, Split, np.ndarray]:
    """(the positions fitted, the positions held out, the held-out indices): a seeded draw of ``fraction``."""
    n = split.patterns
    held = np.sort(np.random.default_rng(seed).permutation(n)[: max(1, round(fraction * n))])
    fit = np.setdiff1d(np.arange(n), held)
    return split.positions_subset(fit), split.positions_subset(held), held


def heldout_nll(held: Split, obj: np.ndarray, model: str) -> float:
    """Mean Poisson NLL per detector pixel of ``held``'s counts under ``model``'s prediction from ``obj``."""
    expected = torch.from_numpy(PREDICTORS[model](held, obj))
    counts = held.amplitude.double() ** 2
    return float(gradient_solver.poisson_nll(expected, counts))


def _evaluator(cfg: Params, fit: Split, held: Split):
    masks = regions(fit, cfg.compare.scanned_threshold)

    def evaluate(obj: np.ndarray, model: str) -> dict:
        featured = score_arm(obj, fit.truth, masks, cfg.compare, parts=("featured",), full=False).scores["featured"]
        return {"phase_r": float(featured["phase"]["pearson_r"]), "amplitude_r": float(featured["amplitude"]["pearson_r"]),
                "heldout_nll": heldout_nll(held, obj, model)}

    return evaluate


def _pick(rows: list[dict], protocol: str) -> dict:
    """The best row by the protocol's criterion (the first such row on a tie: earlier checkpoints come first)."""
    key, direction, _ = PROTOCOLS[protocol]
    sign = 1.0 if direction == "maximize" else -1.0
    return max(rows, key=lambda row: sign * row[key])


def _setting_name(setting: PtychiSetting) -> str:
    return f"{setting.noise_model}, TV {setting.tv_weight:.3g}, momentum {setting.momentum:g}"


def _suggest(trial, search) -> PtychiSetting:
    """A setting of the search space: noise model, TV off or log-uniform in its range, momentum."""
    noise_model = trial.suggest_categorical("noise_model", list(search.noise_models))
    tv_on = trial.suggest_categorical("tv", [False, True])
    tv_weight = trial.suggest_float("tv_weight", *search.tv_weight, log=True) if tv_on else 0.0
    momentum = trial.suggest_categorical("momentum", [float(m) for m in search.momentum])
    return PtychiSetting(noise_model=noise_model, tv_weight=round(float(tv_weight), 6), momentum=float(momentum))


def tune_ptychi(cfg: Params, fit: Split, dose: int, view: str, evaluate, seconds: list, *, progress: bool = True) -> dict:
    """One Optuna search per protocol over pty-chi settings on ``fit``; both picks and every trial."""
    import optuna  # the searches only

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search, r = cfg.tune.ptychi_search, cfg.reconstruct
    epochs = list(cfg.tune.ptychi_epochs[view])
    seed = derive_seed(r.seed, dose, view, SPLIT) % (2**31)
    configured = PtychiSetting(noise_model=r.noise_model, tv_weight=0.0, momentum=float(r.momentum))
    runs: dict[PtychiSetting, list[dict]] = {}  # setting -> its rows so far (runs are deterministic: reused)
    torch.set_num_threads(cfg.tune.threads)
    out = {"space": {"noise_models": list(search.noise_models), "tv_weight": ["off", *search.tv_weight],
                     "tv_weight_scale": "log-uniform", "momentum": list(search.momentum), "epochs": epochs},
           "configured": None, "searches": {}}

    for protocol, (key, direction, pick_key) in PROTOCOLS.items():
        trials: list[dict] = []

        def objective(trial, key=key, trials=trials, protocol=protocol):
            setting = _suggest(trial, search)
            done = list(runs.get(setting, []))
            entry = {"trial": trial.number, "setting": _setting_name(setting), "noise_model": setting.noise_model,
                     "tv_weight": setting.tv_weight, "momentum": setting.momentum, "state": "complete", "rows": []}
            trials.append(entry)

            def report(row):
                entry["rows"].append(row)
                trial.report(row[key], row["epochs"])
                if trial.should_prune():
                    entry["state"] = "pruned"
                    raise optuna.TrialPruned()

            for row in done:
                report(row)
            if len(done) < len(epochs):  # run it (again from the start: the earlier checkpoints repeat exactly)
                fresh: list[dict] = []
                start = time.perf_counter()

                def checkpoint(epoch, obj):
                    row = {"epochs": epoch, **evaluate(obj, "ptychi")}
                    fresh.append(row)
                    seconds.append({"setting": entry["setting"], "epochs": epoch, "seconds": time.perf_counter() - start})
                    if len(fresh) > len(runs.get(setting, [])):
                        runs[setting] = list(fresh)
                    if len(fresh) > len(done):
                        report(row)

                reconstruct(setting, r.batch_size, fit, epochs[-1], seed, progress=progress,
                            desc=f"tune pty-chi {protocol} #{trial.number} ({entry['setting']})", checkpoints=epochs,
                            on_checkpoint=checkpoint)
            return entry["rows"][-1][key]

        sampler = optuna.samplers.TPESampler(seed=derive_seed(search.seed, dose, view) % (2**32),
                                             n_startup_trials=search.startup_trials)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=search.prune_after, n_warmup_steps=0)
        study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
        study.enqueue_trial({"noise_model": configured.noise_model, "tv": False, "momentum": configured.momentum})
        study.optimize(objective, n_trials=search.trials, n_jobs=1, gc_after_trial=False, show_progress_bar=False)
        rows = [{"trial": t["trial"], "setting": t["setting"], "noise_model": t["noise_model"], "tv_weight": t["tv_weight"],
                 "momentum": t["momentum"], **row} for t in trials for row in t["rows"]]
        out["searches"][protocol] = {"criterion": key, "direction": direction, "trials": trials}
        out[pick_key] = _pick(rows, protocol)
    at = epochs.index(r.epochs[view])
    out["configured"] = {"setting": _setting_name(configured), "noise_model": configured.noise_model,
                         "tv_weight": 0.0, "momentum": configured.momentum, **runs[configured][at]}
    out["distinct_runs"] = len(runs)
    return out


def tune_gradient(cfg: Params, fit: Split, dose: int, view: str, evaluate, seconds: list, *, progress: bool = True) -> dict:
    """The gradient solver once through every level on ``fit``; each protocol's stop."""
    g = cfg.gradient
    gradient_solver.setup(cfg.tune.threads)
    rows = []
    done = {factor: i * g.steps_per_level for i, factor in enumerate(g.levels)}  # steps before each level
    start = time.perf_counter()

    def checkpoint(level, step, obj):
        rows.append({"setting": f"{level} px/sample", "level": level, "steps": step, "total_steps": done[level] + step,
                     **evaluate(obj, "physics")})
        seconds.append({"level": level, "steps": step, "seconds": time.perf_counter() - start})

    gradient_solver.solve(fit, g, gradient_solver.schedule(g), derive_seed(g.seed, dose, view, SPLIT), progress=progress,
                          desc="tune gradient", checkpoints=cfg.tune.gradient_checkpoints, on_checkpoint=checkpoint)
    return {"grid": rows, **{PROTOCOLS[p][2]: _pick(rows, p) for p in PROTOCOLS}}


def run(cfg: Params, obj: str, dose, view: str, view_dir, report, timing, *, progress: bool = True) -> dict:
    # load: the train split only
    obj, dose = cfg.object(obj), cfg.dose(dose)
    definition = cfg.view(view)
    report, timing = map(Path, (report, timing))
    summary = layout.read_view_summary(view_dir, dose, view)
    record = {"object": obj, "dose": dose, "view": view, "split": SPLIT, "criterion": CRITERION,
              "protocols": {p: {"criterion": k, "arms": {s: ARMS[s][p] for s in ARMS}} for p, (k, _, _) in PROTOCOLS.items()}}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        write_json(report, record)
        return record
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    t = cfg.tune
    fit, held, held_index = holdout(split, t.heldout_fraction, derive_seed(t.heldout_seed, dose, view) % (2**32))
    evaluate = _evaluator(cfg, fit, held)
    # compute
    start = time.perf_counter()
    floor = evaluate(np.ones(split.truth.shape, dtype=np.complex64), "physics")
    row_seconds = {"ptychi": [], "gradient": []}  # wall time of each checkpoint (timing file only)
    ptychi = tune_ptychi(cfg, fit, dose, view, evaluate, row_seconds["ptychi"], progress=progress)
    ptychi_seconds = time.perf_counter() - start
    grad = tune_gradient(cfg, fit, dose, view, evaluate, row_seconds["gradient"], progress=progress)
    seconds = time.perf_counter() - start
    # write
    record.update(skipped=False, data={"path": str(data_path), "sha256": sha256_file(data_path)},
                  positions=split.patterns, heldout={"fraction": t.heldout_fraction, "positions": len(held_index),
                                                     "fitted": fit.patterns, "indices": held_index.tolist()},
                  floor_phase_r=floor["phase_r"], floor_amplitude_r=floor["amplitude_r"],
                  floor_heldout_nll=floor["heldout_nll"],
                  agree={solver: _same(solver, rec) for solver, rec in (("ptychi", ptychi), ("gradient", grad))},
                  ptychi=ptychi, gradient=grad)
    write_json(report, record)
    write_json(timing, {"object": obj, "dose": dose, "view": view, "tune_seconds": seconds, "ptychi_seconds": ptychi_seconds,
                        "gradient_seconds": seconds - ptychi_seconds, "checkpoint_seconds": row_seconds,
                        "positions": split.patterns, "threads": t.threads, "torch": torch.__version__})
    return {**record, "seconds": seconds}


def _same(solver: str, rec: dict) -> bool:
    """Whether both protocols picked the same setting and stop."""
    fields = ("noise_model", "tv_weight", "momentum", "epochs") if solver == "ptychi" else ("level", "steps")
    return all(rec["selected"][f] == rec["selected_heldout"][f] for f in fields)


def _line(solver: str, rec: dict) -> str:
    c, h = rec["selected"], rec["selected_heldout"]
    if solver == "ptychi":
        return (f"pty-chi: calibration {c['setting']}, {c['epochs']} epochs (train phase r {c['phase_r']:.3f}); "
                f"no calibration {h['setting']}, {h['epochs']} epochs (phase r {h['phase_r']:.3f})")
    return (f"gradient: calibration stops after {c['steps']} steps at {c['level']} px/sample (phase r {c['phase_r']:.3f}); "
            f"no calibration after {h['steps']} at {h['level']} px/sample (phase r {h['phase_r']:.3f})")


def cli(args) -> None:
    """``ptychostudy tune``: one cell's selection, then its headline on stdout."""
    r = run(load_params(args.params, TuneParams, ReconstructParams, CompareParams), args.obj, args.dose, args.view, args.view_dir,
            args.report, args.timing, progress=not args.no_progress)
    if r["skipped"]:
        print(f"tune {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    print(f"tune {r['object']} dose {r['dose']} {r['view']} (train split, {r['seconds']:.0f} s): {_line('ptychi', r['ptychi'])}; "
          f"{_line('gradient', r['gradient'])}; floor {r['floor_phase_r']:.3f} -> {args.report}")


def build_parser(prog: str = "python -m ptychostudy.tune") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="select the tuned iterative arms' settings on the train split of one dose × view",
                       description="The selection stage (fairness protocol: no setting is chosen from test-split scores). "
                       "On the view's TRAIN split only, tune.heldout_fraction of the positions held out of every fit: "
                       "two Optuna searches over pty-chi LSQML settings (noise model, TV weight, momentum; scored at "
                       "tune.ptychi_epochs.<view>), one per protocol, and one gradient-solver run through "
                       "gradient.levels scored after each of tune.gradient_checkpoints steps of every level. Protocol "
                       "'calibration' selects on phase r against the train truth (arms ptychi_tuned, gradient); "
                       "'no_calibration' on the held-out patterns' Poisson NLL (arms ptychi_heldout, gradient_heldout). "
                       "Writes both picks with every trial (JSON) and a timing file (its figure: stage tune_figure).")
    stage.add_cell(p, "folder with train.npz and view.json (test.npz is never read)")
    p.add_argument("--report", type=Path, required=True, help="selection and scores (JSON) to write (reports/tuning)")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.tune") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
