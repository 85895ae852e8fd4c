"""pty-chi's batch size (``reconstruct.batch_size``), re-chosen on the TRAIN split (docs/history.md: the rule).

For each cell (``--doses`` × the three views) and each candidate batch size, both pty-chi arms run on the
cell's train split: ``ptychi_tuned`` with the setting the tune stage selected (``reports/tuning/``) and
``ptychi`` with its params (``reconstruct.*``). Each is scored by the tune stage's own criterion
(``train_scores``: phase r, featured region, train split against its truth, as ``tune._evaluator`` scores). The test split is never read.

    python bench/ptychi_batch.py                      # doses 1e3 and 1e5, batch 200 and 96, two runs at once
    python bench/ptychi_batch.py --render             # the table of bench/ptychi_batch.md from the runs

Needs the study's views and tune reports (``dvc pull`` or ``dvc repro tune``). Runs are appended to
``bench/ptychi_batch.jsonl`` (one line per run, with the machine); the wall times are speed figures only
when the runs ran alone (``--jobs 1``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import sys
import time
from pathlib import Path

import ptychostudy  # noqa: F401  (numerical pins before numpy and torch)
import torch

from ptychostudy import layout
from ptychostudy.config import load_config
from ptychostudy.dataset import Split
from ptychostudy.io import derive_seed
from ptychostudy.ptychi_solver import reconstruct, settings_of
from ptychostudy.metrics import regions, score_arm
from ptychostudy.tune import SPLIT

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import machine  # noqa: E402  (bench/machine.py: the record every benchmark writes)

RUNS = ROOT / "bench" / "ptychi_batch.jsonl"
TABLE = ROOT / "bench" / "ptychi_batch.md"
MARGIN = 0.01  # a costlier candidate (more LSQML steps per epoch) must gain this much mean train phase r


def train_scores(cfg, split: Split, obj) -> tuple[float, float]:
    """(phase r, amplitude r) of ``obj`` against the train split's truth, featured region: the tune stage's
    calibration criterion (``tune._evaluator``), on the whole split."""
    masks = regions(split, cfg.compare.scanned_threshold)
    featured = score_arm(obj, split.truth, masks, cfg.compare, parts=("featured",), full=False).scores["featured"]
    return float(featured["phase"]["pearson_r"]), float(featured["amplitude"]["pearson_r"])


def one_run(dose: int, view: str, arm: str, batch: int) -> dict:
    """One arm on one cell's train split at one batch size; its train phase r (a fresh process per run)."""
    cfg = load_config(ROOT / "params.yaml")
    torch.set_num_threads(cfg.reconstruct.threads)
    split = Split.read(layout.view_file(layout.view_dir("run1084", dose, view, ROOT), SPLIT), 1,
                       require_groups=cfg.view(view).gridsize > 1)
    # the arm's setting and epochs as its Phase F stage takes them (the tuned arm's: the tune stage's selection)
    setting, epochs, _ = settings_of(cfg, arm, dose, view, layout.tuning_path("run1084", dose, view, ROOT))
    seed = derive_seed(cfg.reconstruct.seed, dose, view, SPLIT) % (2**31)  # the tune stage's seed
    start = time.perf_counter()
    obj, _, _ = reconstruct(setting, batch, split, epochs, seed, progress=False)
    seconds = time.perf_counter() - start
    phase_r, amplitude_r = train_scores(cfg, split, obj)
    return {"dose": dose, "view": view, "arm": arm, "batch_size": batch, "epochs": epochs,
            "setting": {"noise_model": setting.noise_model, "tv_weight": setting.tv_weight, "momentum": setting.momentum},
            "train_phase_r": phase_r, "train_amplitude_r": amplitude_r, "seconds": round(seconds, 1),
            "positions": split.patterns}


def decide(rows: list[dict], current: int, candidates: list[int]) -> tuple[dict, int]:
    """Mean train phase r per batch size over the (cell, arm) runs every candidate has; the winner by the rule."""
    keys = {b: {(r["dose"], r["view"], r["arm"]) for r in rows if r["batch_size"] == b} for b in candidates}
    common = set.intersection(*keys.values())
    mean = {b: sum(r["train_phase_r"] for r in rows if r["batch_size"] == b and (r["dose"], r["view"], r["arm"]) in common)
            / len(common) for b in candidates}
    best = max(candidates, key=lambda b: mean[b])
    winner = best if best == current or mean[best] >= mean[current] + MARGIN else current
    return {"runs_per_candidate": len(common), "mean_train_phase_r": mean}, winner


def render(rows: list[dict], current: int, candidates: list[int]) -> str:
    lines = ["# pty-chi's batch size on the train split (bench/ptychi_batch.py)", "",
             "Rendered from bench/ptychi_batch.jsonl (not typed). Train phase r: featured region of the cell's train",
             "split against its truth (the tune stage's criterion). Rule: docs/history.md (2026-12-05).", "",
             "| dose | view | arm | epochs | " + " | ".join(f"batch {b}: phase r (s)" for b in candidates) + " |",
             "|---:|---|---|---:|" + "---:|" * len(candidates)]
    cells = sorted({(r["dose"], r["view"], r["arm"]) for r in rows}, key=lambda k: (k[0], ["baseline", "dense", "sparse"].index(k[1]), k[2]))
    for dose, view, arm in cells:
        got = {r["batch_size"]: r for r in rows if (r["dose"], r["view"], r["arm"]) == (dose, view, arm)}
        epochs = next(iter(got.values()))["epochs"]
        lines.append(f"| {dose} | {view} | {arm} | {epochs} | " + " | ".join(
            f"{got[b]['train_phase_r']:.3f} ({got[b]['seconds']:.0f})" if b in got else "–" for b in candidates) + " |")
    summary, winner = decide(rows, current, candidates)
    means = ", ".join(f"batch {b}: {summary['mean_train_phase_r'][b]:.4f}" for b in candidates)
    lines += ["", f"Mean over the {summary['runs_per_candidate']} (cell, arm) runs every candidate has: {means}.",
              f"By the rule (a costlier candidate must gain {MARGIN}): **batch {winner}**.",
              "", f"Machine: {rows[-1]['machine']['cpu']}, {rows[-1]['machine']['cores']} cores, {rows[-1]['machine']['date']}; "
              f"runs {rows[-1]['jobs']} at a time (seconds are speed figures only at 1).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--doses", type=int, nargs="+", default=[1000, 100000])
    p.add_argument("--views", nargs="+", default=["baseline", "dense", "sparse"])
    p.add_argument("--batches", type=int, nargs="+", default=[200, 96], help="candidates, the current one first")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, each in its own process (one thread each)")
    p.add_argument("--render", action="store_true", help="only write bench/ptychi_batch.md from the recorded runs")
    a = p.parse_args(argv)
    current = a.batches[0]
    if not a.render:
        todo = [(d, v, arm, b) for d in a.doses for v in a.views for arm in ("ptychi_tuned", "ptychi") for b in a.batches]
        info = {**machine(), "jobs": a.jobs}
        with concurrent.futures.ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn"),
                                                    max_tasks_per_child=1) as pool, RUNS.open("a") as out:
            futures = {pool.submit(one_run, *job): job for job in todo}
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                row = {**future.result(), "machine": info, "jobs": a.jobs}
                out.write(json.dumps(row, sort_keys=True) + "\n")
                out.flush()
                print(f"[{done}/{len(todo)}] dose {row['dose']} {row['view']} {row['arm']} batch {row['batch_size']}: "
                      f"train phase r {row['train_phase_r']:.3f} ({row['seconds']:.0f} s)", flush=True)
    rows = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]
    TABLE.write_text(render(rows, current, a.batches))
    print(TABLE.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
