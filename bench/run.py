"""Benchmarks of ptychostudy on the current machine: one command, every figure a ratio measured in
the same run where one makes sense. Writes bench/results.json, bench/results.md and
bench/network_vs_iterative.png. Tests never assert times; this is where they are measured.

    python bench/run.py                   # everything (about 25 minutes on 2 cores)
    python bench/run.py --skip-pipeline   # everything but the from-scratch `dvc repro` (about 8 minutes)

Sections 2-4 read the default study's view files and bundles (data/views, data/models): run
`dvc repro` (or `dvc pull`) first. Section 5 clones the repository's HEAD into a temporary folder
and runs the whole default study there from scratch, phase by phase.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import ptychostudy  # noqa: E402  (first: its numerical pins must precede numpy and torch, as in every stage)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptychostudy import layout, physics  # noqa: E402
from machine import machine  # noqa: E402  (bench/machine.py: the record every benchmark writes)
from ptychostudy.demo import profile_params  # noqa: E402
from ptychostudy.params.train import architecture
from ptychostudy.base import prepare_base  # noqa: E402
from ptychostudy.bundle import load_bundle  # noqa: E402
from ptychostudy.config import config_from_dict, load_config  # noqa: E402
from ptychostudy.params import as_dict  # noqa: E402
from ptychostudy.dataset import Split  # noqa: E402
from ptychostudy.inference import reconstruct_split  # noqa: E402
from ptychostudy.metrics import regions, score_arm  # noqa: E402
from ptychostudy import gradient_solver as gradient  # noqa: E402
from ptychostudy import refine  # noqa: E402
from ptychostudy.params.reconstruct import PtychiSetting  # noqa: E402
from ptychostudy.ptychi_solver import build_task, read_selection  # noqa: E402
from ptychostudy.simulate import CHUNK, scan_positions, simulate_dose  # noqa: E402
from ptychostudy.simulator import fine_model, unscaled_intensities  # noqa: E402
from ptychostudy.training import Trainer  # noqa: E402
from ptychostudy.views import build_view  # noqa: E402
from profiles import cut_to_doses  # noqa: E402  (bench/: this script's folder)

PROBE = ROOT / "data/base/fly001_probe/c1_bigT_probe.npz"
OBJECT = ROOT / "data/base/run1084/Run1084_recon3_postPC.npz"
PHASES = ("base", "simulate", "views", "train", "tune", "reconstruct", "reconstruct_tuned", "gradient", "compare",
          "summarize")


def log(*args):
    print(*args, flush=True)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def best_of(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timings of ``fn()`` (seconds): the least disturbed by other work."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------------------------------
# 1. Phase C against the FFT bound


def fft_rate(n_patterns: int, size: int, threads: int, dtype=torch.complex128) -> float:
    torch.set_num_threads(threads)
    x = torch.randn(n_patterns, size, size, dtype=dtype)
    seconds = best_of(lambda: torch.fft.fft2(x, norm="ortho"))
    return n_patterns / seconds


def simulation_rate(cfg, positions_per_split: int, threads: int, workdir: Path) -> dict:
    raw = as_dict(cfg)
    raw["simulate"]["positions_per_split"] = positions_per_split
    raw["simulate"]["threads"] = threads
    c = config_from_dict(raw)
    base = prepare_base(c, PROBE, "run1084", OBJECT)
    out = workdir / f"sim-{positions_per_split}-{threads}"
    _, seconds = timed(simulate_dose, c, base, 100000, out, out / "r.json", out / "f.png", progress=False)
    return {"patterns": 2 * positions_per_split, "seconds": seconds, "patterns_per_s": 2 * positions_per_split / seconds}


def simulation_core(cfg, n_patterns: int, threads: int) -> dict:
    """Seconds of each piece of Phase C's per-pattern work, in chunks as simulate_dose does them
    (the same public functions the stage calls): the fine-grid far fields, and the Poisson counts."""
    torch.set_num_threads(threads)
    base = prepare_base(cfg, PROBE, "run1084", OBJECT)
    pos = scan_positions(cfg, base.obj.shape)["train"][:n_patterns]
    model = fine_model(base.obj, base.probe, cfg.simulate.fine_factor)
    rng = np.random.default_rng(0)
    t = {"fine_far_field": 0.0, "poisson": 0.0}
    for start in range(0, len(pos), CHUNK):
        t0 = time.perf_counter()
        intensity = unscaled_intensities(model, pos[start : start + CHUNK]) * 300.0**2
        t1 = time.perf_counter()
        physics.poisson_counts(intensity, rng)
        t2 = time.perf_counter()
        t["fine_far_field"] += t1 - t0
        t["poisson"] += t2 - t1
    return {k: v for k, v in t.items()} | {"patterns": len(pos)}


def bench_simulation(cfg, workdir: Path) -> dict:
    log("1. simulation vs the FFT bound")
    threads = cfg.simulate.threads
    sim = simulation_rate(cfg, cfg.simulate.positions_per_split, threads, workdir)
    bound = fft_rate(sim["patterns"], cfg.base.patch_size, threads)
    core = simulation_core(cfg, cfg.simulate.positions_per_split, threads)
    log(f"   per-pattern work for {core['patterns']} patterns: fine-grid far fields {core['fine_far_field']:.2f} s, "
        f"Poisson counts {core['poisson']:.2f} s")
    out = {"threads": threads, "patch_size": cfg.base.patch_size, **sim, "fft_bound_patterns_per_s": bound,
           "ratio_to_fft_bound": sim["patterns_per_s"] / bound, "breakdown_seconds": core,
           "note": "Phase C stage work (patches, exit waves, FFT, Poisson counts, NPZ files, figure) vs batched "
                   "complex128 torch.fft.fft2 of the same count and size alone"}
    log(f"   {sim['patterns_per_s']:.0f} patterns/s vs FFT bound {bound:.0f}/s: ratio {out['ratio_to_fft_bound']:.3f}")
    return out


# ---------------------------------------------------------------------------------------
# 2. training step, FLOP rate, memory


def sgemm_rate(threads: int, size: int = 2048) -> float:
    torch.set_num_threads(threads)
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    seconds = best_of(lambda: torch.mm(a, b), repeats=5)
    return 2 * size**3 / seconds


def load_split(dose: int, view: str, part: str, gridsize: int) -> Split:
    path = layout.view_file(layout.view_dir("run1084", dose, view, ROOT), part)
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `dvc repro` (or `dvc pull`) before the benchmarks")
    return Split.read(path, gridsize)


def step_time(cfg, split: Split, view: str, steps: int = 20, dose: int = 100000) -> tuple[float, float]:
    """(seconds per optimiser step, FLOPs per step counted by torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(cfg.train.threads)
    trainer = Trainer(cfg, split, architecture(cfg, view, dose), seed=1)
    opt = trainer.optimizer()
    batches = trainer.device_batches(steps + 3, cfg.train.batch_size, steps + 3)

    def one():
        trainer.step(opt, next(batches))  # the training stage's own step

    one()  # warm-up
    counter = FlopCounterMode(display=False)
    with counter:
        one()
    flops = counter.get_total_flops()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - start) / steps, flops


def train_child(args: list[str], out: Path) -> float:
    """Run ``ptychostudy <args>`` (a training job) in a child process; its peak RSS in MB."""
    hwm = out / "vmhwm.txt"
    out.mkdir(parents=True, exist_ok=True)
    wrapper = ("import sys\nfrom ptychostudy.cli import main\nrc = main(sys.argv[2:])\n"
               "line = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
               "open(sys.argv[1], 'w').write(line.split()[1])\nsys.exit(rc)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run([sys.executable, "-c", wrapper, str(hwm), *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"training child failed: {result.stderr[-2000:]}")
    # VmHWM: the peak resident set of the child's own address space (ru_maxrss would include the
    # parent's pages duplicated by fork before exec)
    return int(hwm.read_text()) / 1024


def peak_memory_of_training(cfg, view: str, workdir: Path, steps: int = 20) -> dict:
    """Run one real training job (the default settings, ``steps`` steps) in a child process; its peak RSS."""
    raw = as_dict(cfg)
    raw["train"]["steps_per_epoch"] = steps
    raw["train"]["epochs"] = {v: 1 for v in cfg.study.views}
    params = workdir / f"params-{view}.yaml"
    import yaml

    params.write_text(yaml.safe_dump(raw))
    out = workdir / f"mem-{view}"
    cmd = [sys.executable, "-m", "ptychostudy", "--no-progress", "train", "--params", str(params), "--object", "run1084", "--dose", "100000",
           "--view", view, "--view-dir", str(layout.view_dir("run1084", 100000, view, ROOT)), "--bundle", str(out / "wts.h5.zip"),
           "--report", str(out / "r.json"), "--history", str(out / "h.csv"), "--timing", str(out / "t.json"),
           "--figure", str(out / "f.png")]
    return {"view": view, "steps": steps, "peak_rss_mb": train_child(cmd[3:], out)}


def bench_training(cfg, workdir: Path) -> dict:
    log("2. training step, FLOP rate vs SGEMM, peak memory")
    threads = cfg.train.threads
    gemm = sgemm_rate(threads)
    per_view = {}
    for view in cfg.study.views:
        gs = cfg.view(view).gridsize
        seconds, flops = step_time(cfg, load_split(100000, view, "train", gs), view)
        per_view[view] = {"gridsize": gs, "ms_per_step": 1000 * seconds, "gflop_per_step": flops / 1e9,
                          "gflop_per_s": flops / seconds / 1e9, "ratio_to_sgemm": flops / seconds / gemm}
        log(f"   {view}: {1000 * seconds:.0f} ms/step, {flops / 1e9:.2f} GFLOP/step, "
            f"{flops / seconds / 1e9:.2f} GFLOP/s = {flops / seconds / gemm:.3f} of SGEMM")
    memory = [peak_memory_of_training(cfg, view, workdir) for view in cfg.study.views]
    for m in memory:
        log(f"   peak memory, {m['view']} job: {m['peak_rss_mb']:.0f} MB")
    return {"threads": threads, "batch_size": cfg.train.batch_size, "sgemm_gflop_per_s": gemm / 1e9, "views": per_view,
            "peak_memory": memory,
            "note": "FLOPs of convolutions and matrix products counted by torch.utils.flop_counter (FFTs and "
                    "element-wise work not counted), forward + backward + Adam; SGEMM = float32 2048² torch.mm, best of 5"}


# ---------------------------------------------------------------------------------------
# 3 and 4. inference; network vs pty-chi


def featured_scores(cfg, recon, split: Split) -> dict:
    """The featured-region scores of the study's one scoring path (``metrics.score_arm``, as Phase G)."""
    masks = regions(split, cfg.compare.scanned_threshold)
    s = score_arm(recon, split.truth, masks, cfg.compare, ("featured",)).scores["featured"]
    return {"phase_ssim": s["phase"]["ssim"], "phase_r": s["phase"]["pearson_r"], "amplitude_ssim": s["amplitude"]["ssim"]}


def bench_inference(cfg) -> dict:
    log("3. inference (predict + stitch) on test splits")
    torch.set_num_threads(cfg.infer.threads)
    out = {}
    for view in cfg.study.views:
        gs = cfg.view(view).gridsize
        split = load_split(100000, view, "test", gs)
        loaded = load_bundle(layout.bundle_path(ROOT / layout.MODELS, "run1084", 100000, view))
        _, seconds = reconstruct_split(loaded, split, cfg.infer, torch.device("cpu"))
        n = split.patterns
        out[view] = {"gridsize": gs, "patterns": n, "seconds": seconds, "patterns_per_s": n / seconds}
        log(f"   {view}: {n} patterns in {seconds:.2f} s = {n / seconds:.0f} patterns/s")
    return {"threads": cfg.infer.threads, "views": out}


def ptychi_curve(cfg, split: Split, setting, checkpoints: list[int], seed: int = 5) -> list[dict]:
    """pty-chi LSQML with ``setting`` (the tuned arm's selection), scored after each checkpoint epoch."""
    import warnings

    torch.set_num_threads(cfg.reconstruct.threads)
    rows = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        start = time.perf_counter()
        task = build_task(setting, cfg.reconstruct.batch_size, split, max(checkpoints), seed)
        done = 0
        for epochs in checkpoints:
            task.run(n_epochs=epochs - done)
            done = epochs
            elapsed = time.perf_counter() - start
            obj = task.get_data_to_cpu("object", as_numpy=True)[0]
            scoring_start = time.perf_counter()
            rows.append({"epochs": epochs, "seconds": elapsed, **featured_scores(cfg, obj, split)})
            start += time.perf_counter() - scoring_start  # scoring is not reconstruction time
    return rows


def gradient_curve(cfg, split: Split, stop: tuple[int, int], seed: int = 5) -> list[dict]:
    """The gradient solver run to the tune stage's stop, scored after every 10 steps (scoring time excluded)."""
    gradient.setup(cfg.gradient.threads)
    plan = gradient.schedule(cfg.gradient, stop)
    every = tuple(range(10, cfg.gradient.steps_per_level + 1, 10))
    rows, clock = [], {"start": time.perf_counter(), "steps": 0}
    done = {factor: sum(steps for f, steps in plan[:i]) for i, (factor, _) in enumerate(plan)}

    def checkpoint(level, step, obj):
        elapsed = time.perf_counter() - clock["start"]
        scoring_start = time.perf_counter()
        rows.append({"steps": done[level] + step, "level": level, "seconds": elapsed, **featured_scores(cfg, obj, split)})
        clock["start"] += time.perf_counter() - scoring_start

    gradient.solve(split, cfg.gradient, plan, seed, progress=False, checkpoints=every, on_checkpoint=checkpoint)
    torch.use_deterministic_algorithms(False)
    return rows


def refine_curve(cfg, dose: int, view: str) -> list[dict]:
    """The refinement arm (refine.py, the stage's own function and settings) on the view's test split: at each
    checkpoint, the refinement steps' seconds so far plus that checkpoint's inference (scoring excluded)."""
    view_dir = layout.view_dir("run1084", dose, view, ROOT)
    _, _, split, loaded = refine.load(cfg, "run1084", dose, view, view_dir, layout.bundle_path(ROOT / layout.MODELS, "run1084", dose, view))
    rows = []
    _, _, points, _ = refine.refine(cfg, dose, view, split, loaded, progress=False,
                                    on_checkpoint=lambda steps, canvas: rows.append(
                                        {"steps": steps, **featured_scores(cfg, canvas, split)}))
    for row, point in zip(rows, points):
        row.update(seconds=point["seconds"] + point["inference_seconds"], refine_seconds=point["seconds"])
    torch.use_deterministic_algorithms(False)
    return rows


def equal_quality_time(curve: list[dict], target: float, key: str = "phase_ssim") -> float | None:
    """pty-chi's wall time when its ``key`` first reaches ``target`` (linear between checkpoints)."""
    prev_t, prev_v = 0.0, None
    for row in curve:
        if row[key] >= target:
            if prev_v is None or row[key] == prev_v:
                return row["seconds"]
            return prev_t + (target - prev_v) / (row[key] - prev_v) * (row["seconds"] - prev_t)
        prev_t, prev_v = row["seconds"], row[key]
    return None


def bench_network_vs_iterative(cfg, view: str, out_png: Path) -> dict:
    """Time to quality on one view's test split: the network (inference, and training + inference) against
    the tuned iterative arms with the settings the tune stage selected on the train split
    (reports/tuning), sampled from the first epoch (pty-chi) or every 10 steps (gradient)."""
    log(f"4. network vs the tuned iterative arms on the {view} test split, per dose")
    results = {}
    for dose in cfg.study.doses:
        gs = cfg.view(view).gridsize
        split = load_split(dose, view, "test", 1)
        torch.set_num_threads(cfg.infer.threads)
        recon, infer_s = reconstruct_split(load_bundle(layout.bundle_path(ROOT / layout.MODELS, "run1084", dose, view)),
                                           load_split(dose, view, "test", gs), cfg.infer, torch.device("cpu"))
        net = featured_scores(cfg, recon, split)
        train_file = layout.timing_path("train", "run1084", dose, view, ROOT)
        train_s = json.loads(train_file.read_text())["train_seconds"] if train_file.is_file() else None
        tuning = layout.tuning_path("run1084", dose, view, ROOT)
        chosen = read_selection(tuning, dose, view, "ptychi")
        setting = PtychiSetting(chosen["noise_model"], float(chosen["tv_weight"]), float(chosen["momentum"]))
        last = int(chosen["epochs"])
        checkpoints = sorted({e for e in (1, 2, 3, 4, 5, 10, 20, 40, 60, 80) if e < last} | {last})
        curves = {"ptychi_tuned": ptychi_curve(cfg, split, setting, checkpoints),
                  "gradient": gradient_curve(cfg, split, gradient.read_selection(tuning, dose, view)),
                  "pinn_refined": refine_curve(cfg, dose, view)}
        entry = {"network": {**net, "inference_seconds": infer_s, "training_seconds_last_run": train_s},
                 "ptychi_tuned_setting": chosen["setting"], "curves": curves}
        # the refinement arm against the tuned pty-chi arm, both ways: each one's time to the other's final quality
        refined, tuned = curves["pinn_refined"], curves["ptychi_tuned"]
        entry["refined_vs_ptychi_tuned"] = {
            "refined_phase_r": refined[-1]["phase_r"], "refined_seconds": refined[-1]["seconds"],
            "ptychi_tuned_phase_r": tuned[-1]["phase_r"], "ptychi_tuned_seconds": tuned[-1]["seconds"],
            "ptychi_tuned_seconds_to_refined_phase_r": equal_quality_time(tuned, refined[-1]["phase_r"], key="phase_r"),
            "refined_seconds_to_ptychi_tuned_phase_r": equal_quality_time(refined, tuned[-1]["phase_r"], key="phase_r"),
        }
        log(f"   dose {dose}: pinn_refined phase r {refined[0]['phase_r']:.3f} -> {refined[-1]['phase_r']:.3f} in "
            f"{refined[-1]['seconds']:.1f} s; ptychi_tuned {tuned[-1]['phase_r']:.3f} in {tuned[-1]['seconds']:.1f} s")
        for arm, curve in curves.items():
            t_equal = equal_quality_time(curve, net["phase_r"], key="phase_r")
            entry[arm] = {"seconds_to_network_phase_r": t_equal, "best_phase_r": max(r["phase_r"] for r in curve),
                          "over_inference_at_equal_phase_r": (t_equal / infer_s) if t_equal else None}
            verdict = (f"reaches it after {t_equal:.1f} s = {t_equal / infer_s:.1f}× inference" if t_equal else
                       f"never reaches it (best {entry[arm]['best_phase_r']:.3f})")
            log(f"   dose {dose}: network phase r {net['phase_r']:.3f} in {infer_s:.2f} s inference; {arm} {verdict}")
        results[dose] = entry
    plot_curves(results, view, out_png)
    return {"view": view, "doses": results, "machine": machine(),
            "note": "phase r in the featured region of the test split; iterative times exclude scoring; the tuned "
                    "settings are the tune stage's (train split); training time is the last `dvc repro`'s "
                    "(reports/timing), when present"}


def plot_curves(results: dict, view: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (dose, r) in enumerate(sorted(results.items())):
        colour = f"C{i}"
        for arm, style in (("ptychi_tuned", "o:"), ("gradient", "v--"), ("pinn_refined", "*-")):
            curve = r["curves"].get(arm)
            if not curve:
                continue
            ax.plot([c["seconds"] for c in curve], [c["phase_r"] for c in curve], style, color=colour, ms=3,
                    label=f"{arm}, dose {dose:g}")
        net = r["network"]
        ax.plot([net["inference_seconds"]], [net["phase_r"]], "s", color=colour, ms=9,
                label=f"network inference, dose {dose:g}")
        if net["training_seconds_last_run"]:
            ax.plot([net["training_seconds_last_run"] + net["inference_seconds"]], [net["phase_r"]], "^",
                    color=colour, ms=9, mfc="none", label=f"network training + inference, dose {dose:g}")
    ax.set_xscale("log")
    ax.set_xlabel("wall time (s), 2-core CPU")
    ax.set_ylabel("phase r, featured region")
    ax.set_title(f"Time to quality, {view} view test split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def bench_full_profile(workdir: Path, view: str = "dense", dose: int = 100000, epochs: int = 2, steps: int = 25) -> dict:
    """One cell of profiles/full.yaml (N = 128, 5,152 positions per split, the full network) on the CPU: its
    base, Phase C and Phase D by the stages' own functions, then the training stage itself (a child process,
    `ptychostudy train`) for ``epochs`` epochs of ``steps`` steps instead of 50 × 500: the path works, and what a
    step and the memory cost. Returns the phase times, ms per step, the child's peak RSS and its scores."""
    import yaml

    log(f"10. the full profile's cell dose {dose:g} × {view} on the CPU ({epochs} epochs of {steps} steps)")
    raw = cut_to_doses(profile_params(ROOT / "profiles/full.yaml", ROOT / "params.yaml"), [dose])
    full_steps = raw["train"]["epochs"][view] * raw["train"]["steps_per_epoch"]  # the profile's own length
    raw["train"].update(accelerator="cpu", steps_per_epoch=steps, epochs={v: epochs for v in raw["train"]["epochs"]})
    cfg = config_from_dict(raw)
    params = workdir / "params-full.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    base, base_s = timed(prepare_base, cfg, PROBE, OBJECT)
    sim_dir, view_dir, out = workdir / "full-sim", workdir / "full-view", workdir / "full-train"
    _, sim_s = timed(simulate_dose, cfg, base, dose, sim_dir, workdir / "full-sim.json", workdir / "full-sim.png",
                     progress=False)
    _, view_s = timed(build_view, cfg, dose, view, sim_dir, view_dir, workdir / "full-view.json",
                      workdir / "full-view.png", progress=False)
    facts = json.loads((workdir / "full-view.json").read_text())
    args = ["--no-progress", "train", "--params", str(params), "--object", "run1084", "--dose", str(dose), "--view", view, "--view-dir",
            str(view_dir), "--bundle", str(out / "wts.h5.zip"), "--report", str(out / "r.json"), "--history",
            str(out / "h.csv"), "--timing", str(out / "t.json"), "--figure", str(out / "f.png")]
    peak_mb, train_s = timed(train_child, args, out)
    record, timing = (json.loads((out / n).read_text()) for n in ("r.json", "t.json"))
    split = Split.read(layout.view_file(view_dir, "train"), cfg.view(view).gridsize)
    step_s, _ = step_time(cfg, split, view, steps=5, dose=dose)
    entry = {"dose": dose, "view": view, "patch_size": cfg.base.patch_size, "positions_per_split": cfg.simulate.positions_per_split,
             "view_positions": {s: facts[s]["positions"] for s in ("train", "test")},
             "view_groups": {s: facts[s]["groups"] for s in ("train", "test")},
             "epochs": epochs, "steps_per_epoch": steps, "batch_size": cfg.train.batch_size, "threads": cfg.train.threads,
             "parameters": sum(t.numel() for t in load_bundle(out / "wts.h5.zip").model.parameters()),
             "seconds": {"base": base_s, "simulate": sim_s, "views": view_s, "train_process": train_s},
             "train_ms_per_step_with_scoring": timing["ms_per_step"], "train_ms_per_step": 1000 * step_s,
             "peak_rss_mb": peak_mb, "bundle_bytes": record["bundle"]["bytes"],
             "scores": record["scores"],
             "full_length_steps": full_steps, "full_length_estimate_hours": full_steps * step_s / 3600,
             "note": "profiles/full.yaml with train.accelerator cpu, study.doses [dose] and train.epochs × steps_per_epoch "
                     "cut to the numbers here; the full length (50 epochs × 500 steps) estimated from the step time"}
    log(f"   simulate {sim_s:.0f} s, views {view_s:.0f} s, {entry['view_positions']} positions; training "
        f"{1000 * step_s:.0f} ms/step ({timing['ms_per_step']:.0f} with the per-epoch scoring), peak RSS "
        f"{entry['peak_rss_mb']:.0f} MB; the full {full_steps:,} steps would take {entry['full_length_estimate_hours']:.1f} h")
    return entry


# ---------------------------------------------------------------------------------------
# 5. the pipeline


def bench_pipeline(workdir: Path) -> dict:
    log("5. the whole default study from scratch, phase by phase (a clone of HEAD)")
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(workdir / "site-cache"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=str(clone / "src"))

    def dvc(*args):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=clone, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return time.perf_counter() - start

    phases = {}
    for phase in PHASES:
        phases[phase] = dvc("repro", "--no-run-cache", phase)
        log(f"   {phase}: {phases[phase]:.1f} s")
    total = sum(phases.values())
    noop = dvc("repro")
    status = dvc("status")
    log(f"   total {total:.0f} s; no-op dvc repro {noop:.1f} s; dvc status {status:.1f} s")
    return {"phase_seconds": phases, "total_seconds": total, "noop_repro_seconds": noop, "status_seconds": status,
            "note": "each phase run as `dvc repro --no-run-cache <stage group>` in a fresh clone (DVC overhead "
                    "included); dependencies first, so the sum is the from-scratch study"}


# ---------------------------------------------------------------------------------------
# 6. scaling with positions and threads


def bench_scaling(cfg, workdir: Path) -> dict:
    log("6. scaling with the number of positions and the thread count")
    sizes = (500, 1000, 2000)
    rows = []
    for size in sizes:
        for threads in (1, 2):
            sim = simulation_rate(cfg, size, threads, workdir)
            sim_dir = workdir / f"sim-{size}-{threads}"
            view_dir = workdir / f"view-{size}-{threads}"
            build_view(cfg, "run1084", 100000, "dense", sim_dir, view_dir, view_dir / "v.json", view_dir / "v.png", progress=False)
            train_split = Split.read(layout.view_file(view_dir, "train"), 2)
            test_split = Split.read(layout.view_file(view_dir, "test"), 1, require_groups=True)
            tcfg = cfg.replace(train=dataclasses.replace(cfg.train, threads=threads))
            step_s, _ = step_time(tcfg, train_split, "dense", steps=10)
            torch.set_num_threads(threads)
            trainer = Trainer(tcfg, Split.read(layout.view_file(view_dir, "test"), 2), architecture(cfg, "dense", 100000), seed=1)
            _, eval_s = timed(trainer.evaluate, trainer.split)
            it = dataclasses.replace(cfg.reconstruct, threads=threads)
            icfg = cfg.replace(reconstruct=it)
            curve = ptychi_curve(icfg, test_split, icfg.reconstruct, [5])
            row = {"positions_per_split": size, "threads": threads, "simulate_seconds": sim["seconds"],
                   "dense_train_positions": int(train_split.amplitude.shape[0]),
                   "dense_test_positions": int(test_split.amplitude.shape[0]),
                   "train_ms_per_step": 1000 * step_s, "train_evaluation_seconds": eval_s,
                   "ptychi_seconds_per_epoch": curve[0]["seconds"] / 5}
            rows.append(row)
            log(f"   {size} positions/split, {threads} thread(s): simulate {sim['seconds']:.2f} s, "
                f"train {1000 * step_s:.0f} ms/step + {eval_s:.2f} s per scoring pass "
                f"({row['dense_test_positions']} dense test positions), pty-chi {row['ptychi_seconds_per_epoch']:.2f} s/epoch")
    return {"rows": rows, "note": "simulate: Phase C of one dose (both splits); training: dense view (gridsize 2) "
                                  "steps do not depend on the data size, the per-epoch scoring does; pty-chi: LSQML "
                                  "on the dense view's test split"}


# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# 7. a training step beside busy processes (the stage's own thread and wait rules)

CONTENTION_CONFIGS = {
    # name -> (probe arguments, extra environment): each probe is a fresh process (bench/probe_train.py)
    "before": (["--native"], {}),  # no numerical pins, libgomp's default wait (spin, then sleep): the old stage
    "pinned_spin": (["--native"], dict(ptychostudy.NUMERICAL_PINS)),  # the pins, libgomp's default wait always
    "stage": ([], {}),  # what a stage does now: the pins, and a passive wait when a core is busy at start
    "one_thread": (["--threads", "1"], {}),  # the pins and one torch thread
}


def busy_loops(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy (ended by the caller, by their own id)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def probe(config: str, steps: int) -> dict:
    args, extra = CONTENTION_CONFIGS[config]
    env = {k: v for k, v in os.environ.items() if k not in ptychostudy.NUMERICAL_PINS and k != "OMP_WAIT_POLICY"}
    env.update(extra, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "probe_train.py"), "--steps", str(steps), *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"training probe failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_contention(steps: int = 40, repeats: int = 2) -> dict:
    """ms per training step (train@100000-dense, train.threads) alone and beside one and two busy processes."""
    log("7. training step beside busy processes")
    rows: dict[str, dict] = {c: {} for c in CONTENTION_CONFIGS}
    for busy, label in ((0, "alone"), (1, "one_busy"), (2, "two_busy")):
        loops = busy_loops(busy)
        try:
            time.sleep(1.0)
            for config in CONTENTION_CONFIGS:
                probes = [probe(config, steps) for _ in range(repeats)]
                rows[config][label] = {"ms": [round(p["ms_per_step"], 1) for p in probes],
                                       "wait_policy": probes[0]["wait_policy"] or "default",
                                       "threads": probes[0]["threads"], "weights": sorted({p["weights"] for p in probes})}
                log(f"   {label:9s} {config:12s} {float(np.mean(rows[config][label]['ms'])):7.0f} ms/step "
                    f"(wait {rows[config][label]['wait_policy']})")
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
    out: dict = {"steps": steps, "repeats": repeats, "configs": rows, "machine": machine()}
    for config, r in rows.items():
        mean = {label: float(np.mean(v["ms"])) for label, v in r.items()}
        r["summary"] = {"alone_ms": mean["alone"], "one_busy_ms": mean["one_busy"], "two_busy_ms": mean["two_busy"],
                        "slowdown_one": mean["one_busy"] / mean["alone"], "slowdown_two": mean["two_busy"] / mean["alone"],
                        "weights_unchanged": len({w for v in r.values() if "weights" in v for w in v["weights"]}) == 1}
    out.update(rows["stage"]["summary"])  # the headline: what the stage does now
    out["pins_cost_alone"] = rows["pinned_spin"]["summary"]["alone_ms"] / rows["before"]["summary"]["alone_ms"]
    out["same_weights_as_pinned_spin"] = rows["stage"]["alone"]["weights"] == rows["pinned_spin"]["alone"]["weights"]
    return out


def _simulation_breakdown(b: dict) -> str:
    """Section 1's sentence on where the time goes: the fine-grid simulator's pieces, or (results made before
    Phase C simulated on a finer grid) the old bilinear-patch pieces."""
    if "fine_far_field" in b:
        pieces = f"fine-grid far fields {b['fine_far_field']:.2f} s, Poisson counts {b['poisson']:.2f} s"
    else:
        pieces = (f"bilinear patch extraction {b['extract']:.2f} s, exit wave + FFT + |·|² {b['exit_wave_fft']:.2f} s, "
                  f"Poisson counts {b['poisson']:.2f} s")
    return (f"Where the time goes (the per-pattern work alone, {b['patterns']} patterns): {pieces}; the rest of the "
            "stage is the dose scale pass, NPZ writing and the figure.")


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine of the last `python bench/run.py`: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch "
        f"{m['torch']}; {m['date']} (sections refreshed alone with `--only`, and sections 7-8, name their own). Every "
        "ratio compares two measurements of the same run.",
        "",
    ]
    s = results.get("simulation")
    if s:
        lines += ["## 1. Simulation (Phase C) vs the FFT bound", "",
                  f"{s['threads']} thread(s), N = {s['patch_size']}: {s['patterns']} patterns in {s['seconds']:.2f} s = "
                  f"**{s['patterns_per_s']:.0f} patterns/s**; batched complex128 FFT alone: {s['fft_bound_patterns_per_s']:.0f}/s; "
                  f"ratio **{s['ratio_to_fft_bound']:.3f}**.", "",
                  _simulation_breakdown(s["breakdown_seconds"]), ""]
    t = results.get("training")
    if t:
        lines += ["## 2. Training", "", f"{t['threads']} threads, batch {t['batch_size']}; SGEMM "
                  f"{t['sgemm_gflop_per_s']:.1f} GFLOP/s (float32 2048² `torch.mm`, best of 5). FLOPs per step: "
                  "convolutions and matrix products of forward, backward and Adam, counted by "
                  "`torch.utils.flop_counter` (the FFTs and element-wise work are not counted).", "",
                  "| view | gridsize | ms/step | GFLOP/step | GFLOP/s | of SGEMM |", "|---|---:|---:|---:|---:|---:|"]
        for view, v in t["views"].items():
            lines.append(f"| {view} | {v['gridsize']} | {v['ms_per_step']:.0f} | {v['gflop_per_step']:.2f} | "
                         f"{v['gflop_per_s']:.2f} | {v['ratio_to_sgemm']:.3f} |")
        lines += ["", "Peak memory (RSS) of a training job: " + ", ".join(
            f"{m_['view']} {m_['peak_rss_mb']:.0f} MB" for m_ in t["peak_memory"]) + ".", ""]
    i = results.get("inference")
    if i:
        lines += ["## 3. Inference (predict + stitch, test split, dose 1e5)", "", f"{i['threads']} threads.", "",
                  "| view | gridsize | patterns | seconds | patterns/s |", "|---|---:|---:|---:|---:|"]
        for view, v in i["views"].items():
            lines.append(f"| {view} | {v['gridsize']} | {v['patterns']} | {v['seconds']:.2f} | {v['patterns_per_s']:.0f} |")
        lines.append("")
    n = results.get("network_vs_iterative")
    if n:
        lines += [f"## 4. Network vs the tuned iterative arms ({n['view']} view, test split, featured region)", "",
                  f"Network inference on {results.get('inference', {}).get('threads', 2)} threads; pty-chi tuned (the "
                  "tune stage's setting, selected on the train split) on 1 thread, sampled from epoch 1; the gradient "
                  "solver (its selected stop) every 10 steps; iterative times exclude scoring.", "",
                  "![time to quality](network_vs_iterative.png)", "",
                  "| dose | network phase r | inference (s) | training, last run (s) | arm | best phase r "
                  "| time to the network's phase r | ratio to inference |",
                  "|---:|---:|---:|---:|---|---:|---:|---:|"]
        for dose, r in n["doses"].items():
            net = r["network"]
            train_s = net["training_seconds_last_run"]
            for arm in ("ptychi_tuned", "gradient"):
                a = r[arm]
                t_eq = a["seconds_to_network_phase_r"]
                label = f"{arm} ({r['ptychi_tuned_setting']})" if arm == "ptychi_tuned" else arm
                lines.append(f"| {float(dose):g} | {net['phase_r']:.3f} | {net['inference_seconds']:.2f} | "
                             f"{f'{train_s:.0f}' if train_s else '–'} | {label} | {a['best_phase_r']:.3f} | "
                             + (f"{t_eq:.1f} s | {a['over_inference_at_equal_phase_r']:.1f}× |" if t_eq else "never | – |"))
        lines.append("")
        if any("refined_vs_ptychi_tuned" in r for r in n["doses"].values()):
            lines += ["The test-time refinement arm (pinn_refined: the network fine-tuned on the test patterns, "
                      "refine.*; time = refinement steps + one inference) against the tuned pty-chi arm, each one's time "
                      "to the other's final phase r:", "",
                      "| dose | pinn_refined: phase r (start → end) | its seconds | ptychi_tuned: phase r | its seconds "
                      "| ptychi_tuned to the refined r | pinn_refined to ptychi_tuned's r |", "|---:|---|---:|---:|---:|---:|---:|"]
            for dose, r in n["doses"].items():
                q = r.get("refined_vs_ptychi_tuned")
                if not q:
                    continue
                start = r["curves"]["pinn_refined"][0]["phase_r"]
                fmt = lambda t: "never" if t is None else f"{t:.1f} s"  # noqa: E731
                lines.append(f"| {float(dose):g} | {start:.3f} → {q['refined_phase_r']:.3f} | {q['refined_seconds']:.1f} "
                             f"| {q['ptychi_tuned_phase_r']:.3f} | {q['ptychi_tuned_seconds']:.1f} "
                             f"| {fmt(q['ptychi_tuned_seconds_to_refined_phase_r'])} "
                             f"| {fmt(q['refined_seconds_to_ptychi_tuned_phase_r'])} |")
            lines.append("")
    fp = results.get("full_profile")
    if fp:
        sec = fp["seconds"]
        lines += [f"## 10. The full profile on the CPU (profiles/full.yaml, dose {fp['dose']:g} × {fp['view']})", "",
                  f"Measured on {fp['machine']['cpu']}, {fp['machine']['date']}: N = {fp['patch_size']}, "
                  f"{fp['positions_per_split']} positions per split, {fp['view']} view "
                  f"{fp['view_positions']['train']} / {fp['view_positions']['test']} positions "
                  f"({fp['view_groups']['train']} / {fp['view_groups']['test']} groups), a network of "
                  f"{fp['parameters']:,} parameters, batch {fp['batch_size']}, {fp['threads']} threads; the training stage "
                  f"itself (`ptychostudy train`) for {fp['epochs']} epochs of {fp['steps_per_epoch']} steps.", "",
                  "| base (s) | Phase C (s) | Phase D (s) | training process (s) | ms/step | ms/step with per-epoch scoring "
                  "| peak RSS (MB) | bundle (bytes) | test phase r | 25,000 steps (h, estimate) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {sec['base']:.1f} | {sec['simulate']:.1f} | {sec['views']:.1f} | {sec['train_process']:.0f} "
                  f"| {fp['train_ms_per_step']:.0f} | {fp['train_ms_per_step_with_scoring']:.0f} | {fp['peak_rss_mb']:.0f} "
                  f"| {fp['bundle_bytes']:,} | {fp['scores']['test']['phase_r']:.3f} | {fp['full_length_estimate_hours']:.1f} |",
                  ""]
    g = results.get("full_profile_gpu")
    if g:
        m, fl = g["machine"], g["full_length"]
        lines += ["## 10b. The full profile on a GPU (`bench/gpu_full_profile.py`)", "",
                  f"Measured on {m['gpu']} (CUDA {m['cuda']}, torch {m['torch']}; {m['cpu']}, {m['cores']} cores), "
                  f"{m['date']}: {g['profile']}, view {g['view']}; every run a fresh `ptychostudy train` process.", "",
                  "| check | object grid (px) | steps | runs | identical bundles | ms/step | peak GPU memory (MiB) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for dose, d in sorted(g["determinism"].items(), key=lambda kv: -int(kv[0])):
            ms = [r["step_ms"] for r in d["detail"] if r["step_ms"]]
            lines.append(f"| CUDA determinism, dose {int(dose):g} | {d['object_stride']} | {d['steps']} | {d['runs']} | "
                         f"{d['identical']} | {sum(ms) / max(len(ms), 1):.1f} | {d['detail'][0]['peak_memory_mib']:.0f} |")
        for label, key in (("before the sync-free loop", "before_sync_free"), ("outside samples on one slot", "before_fix")):
            old = g.get(key)
            if old:
                ms = old.get("ms_per_step") or old.get("preflight", {}).get("queued_ms")
                checks = ", ".join(f"dose {int(d):g} {v['identical']}/{v['runs']} identical" for d, v in
                                   sorted(old["determinism"].items(), key=lambda kv: -int(kv[0])))
                lines.append(f"| earlier code: {label} | | | | {checks} | {ms:.1f} | |")
        pf = g.get("preflight")
        if pf:
            lines += ["", f"Preflight (in-process, {pf['steps']} steps after 10): {pf['queued_ms']:.1f} ms per step with the "
                          f"steps queued (as `Trainer.fit` runs them), {pf['read_every_step_ms']:.1f} ms with the loss read "
                          "back after every step."]
        reached = (f"completed in {fl['train_seconds']:.0f} s ({fl['ms_per_step']:.1f} ms per step with the final scoring), "
                   f"peak GPU memory {fl['peak_memory_mib']:.0f} MiB, final loss {fl['final_loss']:.4f}, phase r "
                   f"{fl['scores']['train']['phase_r']:.3f} train / {fl['scores']['test']['phase_r']:.3f} test "
                   "(featured region of train.eval_patterns scored patterns)"
                   if fl.get("completed") else
                   f"**not completed**: stopped at the device-time limit after {fl['process_seconds']:.0f} s at step "
                   f"{fl['steps_reached']:,} of {fl['steps']:,}; the whole length projected at {fl['projected_seconds']:.0f} s")
        lines += ["", f"Full length (dose 1e5 × {g['view']}, {fl['steps']:,} steps): {reached}.", ""]
    gs = results.get("gpu_stages")
    if gs:
        lines += [f"The network's other CUDA stages ({gs['machine']['gpu']}, torch {gs['machine']['torch']}, "
                  f"{gs['machine']['date']}; `bench/gpu_full_profile.py --stages`: {gs['profile']}), each run a fresh "
                  "process:", "", "| stage | runs | identical outputs |", "|---|---:|---:|"]
        lines += [f"| {kind} | {r['runs']} | {r['identical']} |" for kind, r in gs["stages"].items()]
        lines.append("")
    p = results.get("pipeline")
    if p:
        lines += ["## 5. The pipeline (default study from scratch, fresh clone)", "",
                  "Threads as in params.yaml (Phase C 1, training 2, pty-chi 1); each phase timed as "
                  "`dvc repro --no-run-cache <phase>`, DVC's own work included.", "",
                  "| phase | seconds |", "|---|---:|"]
        lines += [f"| {k} | {p['phase_seconds'][k]:.1f} |" for k in PHASES if k in p["phase_seconds"]]
        lines += [f"| **total** | **{p['total_seconds']:.1f}** ({p['total_seconds'] / 60:.1f} min) |", "",
                  f"No-op `dvc repro`: {p['noop_repro_seconds']:.1f} s; `dvc status`: {p['status_seconds']:.1f} s.", ""]
    sc = results.get("scaling")
    if sc:
        lines += ["## 6. Scaling", "", "| positions/split | threads | simulate (s) | dense train/test positions | "
                  "train ms/step | scoring pass (s) | pty-chi s/epoch |", "|---:|---:|---:|---|---:|---:|---:|"]
        for r in sc["rows"]:
            lines.append(f"| {r['positions_per_split']} | {r['threads']} | {r['simulate_seconds']:.2f} | "
                         f"{r['dense_train_positions']} / {r['dense_test_positions']} | {r['train_ms_per_step']:.0f} | "
                         f"{r['train_evaluation_seconds']:.2f} | {r['ptychi_seconds_per_epoch']:.3f} |")
        lines.append("")
    c = results.get("contention")
    if c:
        lines += ["## 7. A training step beside busy processes", "",
                  f"Measured on {c['machine']['cpu']}, {c['machine']['date']}. train@100000-dense's own training step "
                  f"(train.threads threads), {c['steps']} steps after 3 warm-up steps, in a fresh process "
                  f"(bench/probe_train.py), mean of {c['repeats']}; 'busy' = processes running `while True: pass`.", "",
                  "| configuration | alone ms | one busy ms | two busy ms | slowdown one | slowdown two | weights unchanged |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        names = {"before": "before: no pins, libgomp's default wait", "pinned_spin": "pins, default wait always",
                 "stage": "**the stage now**: pins, passive wait when a core is busy", "one_thread": "pins, 1 thread"}
        for config, r in c["configs"].items():
            sm = r["summary"]
            lines.append(f"| {names.get(config, config)} | {sm['alone_ms']:.0f} | {sm['one_busy_ms']:.0f} | "
                         f"{sm['two_busy_ms']:.0f} | {sm['slowdown_one']:.2f}× | {sm['slowdown_two']:.2f}× | "
                         f"{'yes' if sm['weights_unchanged'] else 'NO'} |")
        lines += ["", f"The pins cost {100 * (c['pins_cost_alone'] - 1):.0f} % per step alone on this CPU (AVX2 kernels "
                  "instead of the CPU's widest); the wait policy changes no bit "
                  f"({'same' if c['same_weights_as_pinned_spin'] else 'DIFFERENT'} weights as with the default wait).", ""]
    d = results.get("determinism")
    if d:
        lines += ["## 8. Determinism (`make determinism`)", "",
                  f"Measured on {d['machine']['cpu']}, {d['machine']['date']}, {d['machine']['jobs']} run{'s' if d['machine']['jobs'] != 1 else ''} at a time; "
                  f"{d['profile']}. Each run is a fresh `ptychostudy` process; a run is identical when every output's "
                  "SHA-256 equals the most common outcome's.", "", "| stage kind | runs | identical | outputs compared |",
                  "|---|---:|---:|---|"]
        for kind in ("simulate", "train", "reconstruct"):
            if kind in d:
                r = d[kind]
                lines.append(f"| {kind} | {r['runs']} | {r['identical']} | {', '.join(r['outputs'])} |")
        lines.append("")
    runs = [(key, results[key]) for key in ("executor", "executor_previous", "executor_tiny", "slurm") if key in results]
    if runs:
        lines += ["## 9. Scale-out (`python bench/scaleout.py`)", "",
                  "Serial `dvc repro` against the scale-out driver, both measured alone, and the two dvc.lock files compared "
                  "byte for byte. *From scratch*: a fresh repository built from this checkout, run serially, then a clone of "
                  "it run with the driver. *Forced*: this workspace's complete study rerun with `dvc repro -f`, then with "
                  "`ptychostudy run -f`, the driver's lock compared with the serial run's. The bound is the serial run's "
                  "core-seconds (each stage's seconds × the threads it holds) ÷ the cores: the shortest wall time any "
                  "schedule can reach while every stage keeps its serial speed.", "",
                  "| run | method | machine | stages | serial s | driver s | driver/serial | bound s (÷ serial) | dvc.lock identical |",
                  "|---|---|---|---:|---:|---:|---:|---:|---|"]
        names = {"executor": "default study, local", "executor_tiny": "tiny profile, local",
                 "executor_previous": "default study, local, an earlier design",
                 "slurm": "tiny profile, single-node SLURM"}
        for key, r in runs:
            parallel = r.get("parallel_seconds", r.get("seconds"))
            extra = f" ({r['jobs']} SLURM job{'s' if r['jobs'] != 1 else ''})" if key == "slurm" else ""
            method = "forced" if "forced" in r.get("method", "") else "from scratch"
            b = r.get("bound")
            bound = f"{b['parallel_seconds_bound']:.0f} ({b['ratio_bound']:.2f})" if b else "–"
            lines.append(f"| {r.get('label', names[key])}{extra} | {method} | {r['machine']['cpu']}, {r['machine']['date']} | {r['stages']} | "
                         f"{r['serial_seconds']:.0f} | {parallel:.0f} | {parallel / r['serial_seconds']:.2f} | {bound} | "
                         f"{'yes' if r['lock_identical'] else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def render(path: Path) -> None:
    """Rewrite results.md from an existing results.json (no measuring)."""
    results = json.loads(path.read_text())
    (path.parent / "results.md").write_text(markdown(results) + f"\nBenchmark wall time: "
                                            f"{results['bench_seconds'] / 60:.1f} min.\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-pipeline", action="store_true", help="skip section 5 (the from-scratch dvc repro)")
    parser.add_argument("--only", nargs="*", choices=["simulation", "training", "inference", "network_vs_iterative",
                                                       "pipeline", "scaling", "contention", "full_profile"],
                        help="run only these sections")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--render", action="store_true", help="only rewrite results.md from results.json")
    args = parser.parse_args(argv)
    if args.render:
        render(args.out)
        return 0
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    cfg = load_config(ROOT / "params.yaml")
    wanted = set(args.only or ["simulation", "training", "inference", "network_vs_iterative", "pipeline", "scaling",
                               "contention", "full_profile"])
    if args.skip_pipeline:
        wanted.discard("pipeline")
    results = {"machine": machine()}
    if args.out.is_file() and "determinism" in json.loads(args.out.read_text()):  # written by bench/determinism.py
        results["determinism"] = json.loads(args.out.read_text())["determinism"]
    if args.out.is_file() and args.only:  # refresh some sections of an earlier run
        results = {**json.loads(args.out.read_text()), "machine": machine()}
    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every section, so that a later section's failure loses nothing measured
        results["bench_seconds"] = time.perf_counter() - start
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        (args.out.parent / "results.md").write_text(markdown(results) + f"\nBenchmark wall time: "
                                                    f"{results['bench_seconds'] / 60:.1f} min.\n")

    with tempfile.TemporaryDirectory(prefix="ptychostudy-bench-") as tmp:
        work = Path(tmp)
        sections = {
            "simulation": lambda: bench_simulation(cfg, work),
            "training": lambda: bench_training(cfg, work),
            "inference": lambda: bench_inference(cfg),
            "network_vs_iterative": lambda: bench_network_vs_iterative(
                cfg, "dense", args.out.parent / "network_vs_iterative.png"),
            "scaling": lambda: bench_scaling(cfg, work),
            "contention": bench_contention,
            "full_profile": lambda: {**bench_full_profile(work), "machine": machine()},
            "pipeline": lambda: bench_pipeline(work),
        }
        for name, section in sections.items():
            if name in wanted:
                results[name] = section()
                save()
    log(f"bench: {results['bench_seconds'] / 60:.1f} min -> {args.out} and {args.out.parent / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
