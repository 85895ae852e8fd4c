#!/usr/bin/env python3
"""Issue 15.3 on a CUDA machine: one cell of ``profiles/full.yaml`` trained at full length on the GPU, and
the CUDA path's determinism (the same training twice in fresh processes gives the same bundle bytes).

Run on the GPU machine from the repository root (it needs torch with CUDA, numpy, h5py, pyyaml,
matplotlib and tqdm; not DVC, not pty-chi)::

    PYTHONPATH=src python3 bench/gpu_full_profile.py --out OUT_DIR --deadline-s 540

Steps, all through the stages' own code: base, Phase C for the doses used, Phase D's dense view; then

1. determinism: ``ptychostudy train`` twice per dose (1e5: object grid 1 px; 1e3: 8 px, the grid's
   upsampling path) for ``--determinism-steps`` steps, each in a fresh process; the bundles' SHA-256
   compared;
2. the full-length cell (dose 1e5 × dense, 50 epochs × 500 steps, ``train.eval_every`` as in the
   profile) as one ``ptychostudy train`` process, given what is left of ``--deadline-s``; when the
   projected time (from the determinism runs' step time) does not fit, it still runs until the
   deadline and the steps it reached are reported, marked incomplete.

Writes ``OUT_DIR/gpu_full_profile.json`` (facts, seconds, step time, peak GPU memory, scores,
identical counts) and the full-length run's log, report, history, timing and figure. ``--stages`` checks
the other CUDA stages instead (``gpu_stages.json``: train, refine and inference of the default profile's
dose-1e3 dense cell, each twice). The results enter ``bench/results.json`` (``full_profile_gpu``,
``gpu_stages``) through ``--merge FILE`` on the developer's machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import ptychostudy  # noqa: E402,F401  (first: the numerical pins, as in every stage)
import yaml  # noqa: E402

from ptychostudy import layout  # noqa: E402
from ptychostudy.demo import profile_params  # noqa: E402
from ptychostudy.params.train import architecture
from ptychostudy.base import prepare_base  # noqa: E402
from ptychostudy.config import config_from_dict  # noqa: E402
from ptychostudy.io import sha256_file  # noqa: E402
from ptychostudy.simulate import simulate_dose  # noqa: E402
from ptychostudy.views import build_view  # noqa: E402
from profiles import cut_to_doses  # noqa: E402

PROBE = ROOT / "data/base/fly001_probe/c1_bigT_probe.npz"
OBJECT = ROOT / "data/base/run1084/Run1084_recon3_postPC.npz"
VIEW = "dense"
FULL_DOSE = 100000
CHECK_DOSES = (100000, 1000)
ACCELERATOR = "cuda"  # --accelerator cpu: a local smoke test of this script (with --profile params.yaml --full-epochs 1)
PROFILE = "profiles/full.yaml"  # object grid 1 px and 8 px (profiles/full.yaml's train.object_stride)


def log(*args) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def profile(doses, **train) -> dict:
    raw = cut_to_doses(profile_params(ROOT / PROFILE, ROOT / "params.yaml"), doses)  # a profile: keys that differ
    raw["simulate"]["threads"] = min(16, os.cpu_count() or 1)  # Phase C's speed only (not timed here)
    raw["train"].update(accelerator=ACCELERATOR, **train)
    return raw


def train(params: Path, dose: int, view_dir: Path, out: Path, log_path: Path, timeout: float | None):
    """One ``ptychostudy train`` process; (return code or None when stopped at the deadline, seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "ptychostudy", "train", "--params", str(params), "--object", "run1084", "--dose", str(dose),
            "--view", VIEW, "--view-dir", str(view_dir), "--bundle", str(out / "wts.h5.zip"),
            "--report", str(out / "report.json"), "--history", str(out / "history.csv"),
            "--timing", str(out / "timing.json"), "--figure", str(out / "figure.png")]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with open(log_path, "w") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = None
    return rc, time.perf_counter() - start


def last_progress(log_path: Path) -> tuple[int, int] | None:
    """(steps done, steps in all) from the last tqdm line of a training log."""
    found = re.findall(r"(\d+)/(\d+) \[", log_path.read_text(errors="replace"))
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def step_ms(log_path: Path) -> float | None:
    """Milliseconds per optimiser step from tqdm's rate on the last progress line before the bar's end (the
    steps alone: the end's rate, and the stage's timing file, include the final scoring)."""
    found = re.findall(r"(\d+)/(\d+) \[[^\]]*?([\d.]+)(step/s|s/step)", log_path.read_text(errors="replace"))
    running = [f for f in found if int(f[0]) < int(f[1])] or found
    if not running:
        return None
    value, unit = float(running[-1][2]), running[-1][3]
    return 1000 / value if unit == "step/s" else 1000 * value


def preflight(cfg, view_dir: Path, out: Path, steps: int = 100, variants: bool = False) -> dict:
    """In this process, on the full profile's network and the view's train split: milliseconds per step of
    the stage's own ``Trainer.step`` (queued, read once at the end: as ``Trainer.fit`` runs), of the same
    step read back after every step (as the code before the sync-free loop did), with the CNN's tensors
    channels-last and of the step replayed as a CUDA graph (these two with ``variants``; the graph is for
    speed only: it replays the Adam step size it was captured with); and torch.profiler's table of 5 steps
    (``OUT/step_profile.txt``). Each variant runs on a fresh network; a failing variant is reported, not fatal.
    (Measured 2026-12-04 on the H200 with a place_patches that piled outside samples on one index: 68 ms per
    step, GPU-bound; channels-last 69 ms and the CUDA graph 68 ms changed nothing.)"""
    import torch

    from ptychostudy.dataset import Split
    from ptychostudy.inference import setup_torch
    from ptychostudy.training import Batch, Trainer

    device = setup_torch(cfg.train.threads, ACCELERATOR)
    split = Split.read(layout.view_file(view_dir, "train"), cfg.view(VIEW).gridsize)
    arch, batch = architecture(cfg, VIEW, FULL_DOSE), cfg.train.batch_size
    sync = torch.cuda.synchronize if ACCELERATOR == "cuda" else (lambda: None)

    def fresh():
        trainer = Trainer(cfg, split, arch, 1, device)
        return trainer, trainer.optimizer(), trainer.device_batches(steps + 20, batch, steps + 20)

    def timed(run_step) -> float:
        for _ in range(10):
            run_step()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            run_step()
        sync()
        return 1000 * (time.perf_counter() - start) / steps

    found: dict = {"steps": steps}

    def attempt(name: str, measure) -> None:
        """``found[name] = measure()``; a failure is recorded as ``found[name + "_error"]``, not raised."""
        try:
            found[name] = measure()
        except Exception as error:  # noqa: BLE001 (a measurement; reported)
            found[f"{name}_error"] = repr(error)[:500]

    def queued() -> float:
        trainer, opt, batches = fresh()
        return timed(lambda: trainer.step(opt, next(batches)))

    def read_every_step() -> float:
        trainer, opt, batches = fresh()
        return timed(lambda: float(trainer.step(opt, next(batches))))

    def channels_last() -> float:
        trainer, opt, batches = fresh()
        trainer.net.net.to(memory_format=torch.channels_last)
        return timed(lambda: trainer.step(opt, next(batches)))

    def step_profile() -> str:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        trainer, opt, batches = fresh()
        for _ in range(5):
            trainer.step(opt, next(batches))
        sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ACCELERATOR == "cuda" else [])
        with torch_profile(activities=activities) as prof:
            for _ in range(5):
                trainer.step(opt, next(batches))
            sync()
        table = prof.key_averages()
        key = "cuda_time_total" if ACCELERATOR == "cuda" else "cpu_time_total"
        path = out / "step_profile.txt"
        path.write_text(table.table(sort_by=key, row_limit=40) + "\n\n" + table.table(sort_by="self_cpu_time_total", row_limit=25))
        return path.name

    def cuda_graph() -> float:
        trainer, opt, batches = fresh()
        first = next(batches)
        static = Batch(first.index.clone(), first.offsets.clone(),
                       None if first.orientation is None else first.orientation.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                trainer.step(opt, static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            trainer.loss(static).backward()
            opt.step()

        def replay():
            b = next(batches)
            static.index.copy_(b.index)
            static.offsets.copy_(b.offsets)
            if b.orientation is not None:
                static.orientation.copy_(b.orientation)
            graph.replay()

        return timed(replay)

    found["queued_ms"] = queued()  # the projection needs it: a failure here is fatal
    attempt("read_every_step_ms", read_every_step)
    if variants:
        attempt("channels_last_ms", channels_last)
    attempt("profile", step_profile)
    if variants:  # the graph's capture last: a failure there touches nothing measured before it
        attempt("cuda_graph_ms", cuda_graph)
    if ACCELERATOR == "cuda":
        try:
            torch.cuda.empty_cache()
        except Exception as error:  # noqa: BLE001
            found["cleanup_error"] = repr(error)[:500]
    return found


def main(argv=None) -> int:
    global ACCELERATOR, PROFILE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the results (created)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu-full-profile"), help="scratch folder (emptied)")
    ap.add_argument("--deadline-s", type=float, default=540.0, help="seconds this script may take in all")
    ap.add_argument("--determinism-steps", type=int, default=100, help="steps of each determinism run")
    ap.add_argument("--accelerator", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke test of the script")
    ap.add_argument("--profile", default=PROFILE, help="params file, relative to the repository (smoke test: params.yaml)")
    ap.add_argument("--full-epochs", type=int, help="cut the full-length run to this many epochs (smoke test)")
    ap.add_argument("--variants", action="store_true", help="the preflight also times channels-last and a CUDA graph")
    ap.add_argument("--stages", action="store_true",
                    help="instead: the default profile's dose-1e3 dense cell through train, refine and inference on CUDA, "
                         "each twice in fresh processes (outputs compared); writes OUT/gpu_stages.json")
    ap.add_argument("--merge", type=Path, help="(on the developer's machine) merge this gpu_full_profile.json into "
                                               "bench/results.json as full_profile_gpu, then exit")
    a = ap.parse_args(argv)
    if a.merge:
        results_path = ROOT / "bench/results.json"
        results = json.loads(results_path.read_text())
        merged = json.loads(a.merge.read_text())
        key = "gpu_stages" if "stages" in merged else "full_profile_gpu"
        results[key] = merged
        results_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        log(f"merged {a.merge} into {results_path} as {key}")
        return 0

    start = time.perf_counter()
    left = lambda: a.deadline_s - (time.perf_counter() - start)  # noqa: E731
    import torch

    ACCELERATOR, PROFILE = a.accelerator, a.profile
    if ACCELERATOR == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs the GPU machine")
    a.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    if a.stages:
        return stages_check(a)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    result: dict = {
        "machine": {"gpu": torch.cuda.get_device_name() if ACCELERATOR == "cuda" else None, "cuda": torch.version.cuda, "torch": torch.__version__,
                    "python": platform.python_version(), "cpu": cpu, "cores": os.cpu_count(),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
        "profile": f"{PROFILE}, train.accelerator {ACCELERATOR}, study.doses cut to the doses run here"
                   + (f", the long run cut to {a.full_epochs} epochs" if a.full_epochs else ""),
        "view": VIEW, "seconds": {}, "determinism": {},
    }
    out_json = a.out / "gpu_full_profile.json"

    def save():
        out_json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")

    full_params = a.work / "params-full.yaml"
    cut = {"epochs": {v: a.full_epochs for v in ("baseline", "dense", "sparse")}} if a.full_epochs else {}
    full_params.write_text(yaml.safe_dump(profile(CHECK_DOSES, **cut), sort_keys=False))
    cfg = config_from_dict(profile(CHECK_DOSES))
    t = time.perf_counter()
    base = prepare_base(cfg, PROBE, "run1084", OBJECT)
    result["seconds"]["base"] = time.perf_counter() - t
    view_dirs = {}

    def data(dose: int) -> Path:
        t = time.perf_counter()
        sim = a.work / f"sim-{dose}"
        simulate_dose(cfg, base, dose, sim, a.work / f"sim-{dose}.json", a.work / f"sim-{dose}.png", progress=False)
        view_dir = a.work / f"view-{dose}"
        facts = build_view(cfg, "run1084", dose, VIEW, sim, view_dir, a.work / f"view-{dose}.json", a.work / f"view-{dose}.png",
                           progress=False)
        result["seconds"][f"data_{dose}"] = time.perf_counter() - t
        result.setdefault("view_groups", {})[str(dose)] = {s: facts[s]["groups"] for s in layout.SPLITS}
        log(f"dose {dose}: simulated and viewed in {time.perf_counter() - t:.1f} s")
        return view_dir

    def determinism(dose: int) -> None:
        steps = a.determinism_steps
        params = a.work / f"params-det-{dose}.yaml"
        params.write_text(yaml.safe_dump(profile(CHECK_DOSES, steps_per_epoch=steps, epochs={"baseline": 1, "dense": 1,
                                                                                            "sparse": 1}), sort_keys=False))
        runs = []
        for attempt in range(2):
            out = a.work / f"det-{dose}-{attempt}"
            rc, seconds = train(params, dose, view_dirs[dose], out, out / "log.txt", None)
            timing = json.loads((out / "timing.json").read_text()) if rc == 0 else {}
            runs.append({"rc": rc, "process_seconds": seconds, "bundle_sha256": sha256_file(out / "wts.h5.zip") if rc == 0 else None,
                         "report_sha256": sha256_file(out / "report.json") if rc == 0 else None,
                         "step_ms": step_ms(out / "log.txt"), "train_seconds": timing.get("train_seconds"),
                         "peak_memory_mib": timing.get("peak_memory_mib")})
            if rc != 0:
                (a.out / f"failed-{dose}-{attempt}.log").write_text((out / "log.txt").read_text(errors="replace")[-20000:])
            log(f"determinism dose {dose} run {attempt}: rc {rc}, {seconds:.1f} s, {runs[-1]['step_ms']} ms/step")
        ok = [r for r in runs if r["rc"] == 0]
        result["determinism"][str(dose)] = {
            "steps": steps, "runs": len(runs), "completed": len(ok),
            "identical": sum(r["bundle_sha256"] == ok[0]["bundle_sha256"] for r in ok) if ok else 0,
            "object_stride": architecture(cfg, VIEW, dose).stride, "detail": runs}
        save()

    view_dirs[FULL_DOSE] = data(FULL_DOSE)
    t = time.perf_counter()
    result["preflight"] = preflight(cfg, view_dirs[FULL_DOSE], a.out, variants=a.variants)
    result["seconds"]["preflight"] = time.perf_counter() - t
    log(f"preflight in {result['seconds']['preflight']:.0f} s: {result['preflight']}")
    save()
    ms = result["preflight"]["queued_ms"]
    full_steps = (a.full_epochs or cfg.train.epochs[VIEW]) * cfg.train.steps_per_epoch
    projected = full_steps * ms / 1000 + 40  # + the process's start and the final scoring
    result["full_length"] = {"steps": full_steps, "projected_seconds": projected}
    log(f"full length: {full_steps} steps, projected {projected:.0f} s; {left():.0f} s left")
    if projected + 70 < left():  # room for the determinism check of the full profile's 1-px grid first
        determinism(FULL_DOSE)
    if projected > left() - 15:
        result["full_length"].update(completed=False, skipped="the projected time does not fit in what is left")
        log("full length skipped: it cannot finish; the determinism checks instead")
    else:
        full_length(a, result["full_length"], full_params, view_dirs[FULL_DOSE], left)
    save()
    for dose in CHECK_DOSES:
        if str(dose) not in result["determinism"] and left() > (60 if dose in view_dirs else 100):
            if dose not in view_dirs:
                view_dirs[dose] = data(dose)
            determinism(dose)
    result["seconds"]["total"] = time.perf_counter() - start
    save()
    log(f"done in {result['seconds']['total']:.0f} s: {out_json}")
    return 0


def full_length(a, entry: dict, full_params: Path, view_dir: Path, left) -> None:
    """The full-length cell as one ``ptychostudy train`` process, stopped at the deadline; its facts into
    ``entry`` and its report, history, timing and figure into ``a.out``."""
    full_out = a.work / "full"
    log_path = a.out / "full_train.log"
    rc, seconds = train(full_params, FULL_DOSE, view_dir, full_out, log_path, max(30.0, left() - 20))
    progress = last_progress(log_path)
    entry.update(rc=rc, completed=rc == 0, process_seconds=seconds, steps_reached=progress[0] if progress else None)
    if rc == 0:
        record = json.loads((full_out / "report.json").read_text())
        timing = json.loads((full_out / "timing.json").read_text())
        entry.update(scores=record["scores"], final_loss=record["final_loss"], bundle_sha256=record["bundle"]["sha256"],
                     train_seconds=timing["train_seconds"], ms_per_step=timing["ms_per_step"],
                     peak_memory_mib=timing.get("peak_memory_mib"))
        for name in ("report.json", "history.csv", "timing.json", "figure.png"):
            shutil.copy(full_out / name, a.out / f"full_{name}")
    log(f"full length: rc {rc}, {seconds:.0f} s, steps reached {entry['steps_reached']}")


def stages_check(a) -> int:
    """The default profile's dose-1e3 dense cell (8-px object grid) on CUDA: ``ptychostudy train`` (cut to
    100 steps) and ``ptychostudy refine`` (its steps cut to 50), each twice in fresh processes, and the
    trained network's inference of the test split (``infer.reconstruct_split``) twice in fresh processes."""
    import torch

    dose, steps = 1000, 100
    raw = cut_to_doses(yaml.safe_load((ROOT / "params.yaml").read_text()), [dose])
    raw["simulate"]["threads"] = min(16, os.cpu_count() or 1)
    raw["train"].update(accelerator=ACCELERATOR, steps_per_epoch=steps, epochs={"baseline": 1, "dense": 1, "sparse": 1})
    raw["refine"].update(accelerator=ACCELERATOR, steps={"baseline": 50, "dense": 50, "sparse": 50})
    raw["infer"].update(accelerator=ACCELERATOR)
    params = a.work / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = config_from_dict(raw)
    start = time.perf_counter()
    base = prepare_base(cfg, PROBE, "run1084", OBJECT)
    sim, view_dir = a.work / "sim", a.work / "view"
    simulate_dose(cfg, base, dose, sim, a.work / "sim.json", a.work / "sim.png", progress=False)
    build_view(cfg, "run1084", dose, VIEW, sim, view_dir, a.work / "view.json", a.work / "view.png", progress=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = {"machine": {"gpu": torch.cuda.get_device_name() if ACCELERATOR == "cuda" else None,
                          "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
              "stages": {}, "profile": f"params.yaml, dose {dose} × {VIEW}, train {steps} steps, refine 50 steps, "
                                       f"accelerator {ACCELERATOR}"}

    def check(kind: str, runs: list[dict]) -> None:
        ok = [r for r in runs if r["rc"] == 0]
        result["stages"][kind] = {"runs": len(runs), "completed": len(ok),
                                  "identical": sum(r["digest"] == ok[0]["digest"] for r in ok) if ok else 0,
                                  "detail": runs}
        (a.out / "gpu_stages.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        log(f"{kind}: {result['stages'][kind]['identical']} of {len(runs)} identical")

    runs = []
    for attempt in range(2):
        out = a.work / f"train-{attempt}"
        rc, seconds = train(params, dose, view_dir, out, out / "log.txt", None)
        runs.append({"rc": rc, "seconds": seconds, "digest": sha256_file(out / "wts.h5.zip") if rc == 0 else None})
        if rc != 0:
            (a.out / f"train-{attempt}.log").write_text((out / "log.txt").read_text(errors="replace")[-20000:])
    check("train", runs)
    bundle = a.work / "train-0" / "wts.h5.zip"
    runs = []
    for attempt in range(2):
        out = a.work / f"refine-{attempt}"
        out.mkdir()
        proc = subprocess.run([sys.executable, "-m", "ptychostudy", "--no-progress", "refine", "--params", str(params),
                               "--object", "run1084", "--dose", str(dose), "--view", VIEW, "--view-dir", str(view_dir), "--bundle", str(bundle),
                               "--out", str(out / "pinn_refined.npz"), "--report", str(out / "report.json"),
                               "--timing", str(out / "timing.json")], capture_output=True, text=True, env=env)
        runs.append({"rc": proc.returncode, "digest": sha256_file(out / "pinn_refined.npz") if proc.returncode == 0 else None})
        if proc.returncode != 0:
            (a.out / f"refine-{attempt}.log").write_text((proc.stdout + proc.stderr)[-20000:])
    check("refine", runs)
    code = ("import sys, hashlib, numpy as np, ptychostudy\n"
            "from ptychostudy.bundle import load_bundle\nfrom ptychostudy.config import load_config\n"
            "from ptychostudy.dataset import Split\nfrom ptychostudy.inference import reconstruct_split, setup_torch\n"
            "cfg = load_config(sys.argv[1]); device = setup_torch(cfg.infer.threads, cfg.infer.accelerator)\n"
            "split = Split.read(sys.argv[3], 2)\n"
            "canvas, _ = reconstruct_split(load_bundle(sys.argv[2]), split, cfg.infer, device)\n"
            "print(hashlib.sha256(np.ascontiguousarray(canvas).tobytes()).hexdigest())\n")
    runs = []
    for attempt in range(2):
        proc = subprocess.run([sys.executable, "-c", code, str(params), str(bundle), str(layout.view_file(view_dir, "test"))],
                              capture_output=True, text=True, env=env)
        runs.append({"rc": proc.returncode, "digest": proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else None})
        if proc.returncode != 0:
            (a.out / f"infer-{attempt}.log").write_text((proc.stdout + proc.stderr)[-20000:])
    check("infer", runs)
    result["seconds"] = time.perf_counter() - start
    (a.out / "gpu_stages.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    log(f"stages check done in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
