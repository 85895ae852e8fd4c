"""The measured Siemens star, stage ``measured_ptychi@<half>``: pty-chi's tuned arm on one half of the scan (A: even
scan index, B: odd), the probe refined from the analytic guess, with the settings the tune stage selected on the
train split of the study cell ``measured.tuning_dose`` × ``measured.tuning_view``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from pathlib import Path

import torch

from ptychostudy import stage
from ptychostudy.io import derive_seed, write_json
from ptychostudy.measured import (
    MEASURED,
    add_arguments,
    guess_scale,
    load,
    normalised,
    split_of,
    write_result,
)
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.measured import MeasuredParams
from ptychostudy.params.reconstruct import PtychiSetting
from ptychostudy.ptychi_solver import reconstruct, settings_of


def _tuned_setting(cfg: Params, tuning) -> tuple[PtychiSetting, int, dict]:
    """pty-chi's tuned arm as the tune stage selected it for the study cell measured.tuning_dose × tuning_view."""
    m = cfg.measured
    setting, epochs, chosen = settings_of(cfg, "ptychi_tuned", m.tuning_dose, m.tuning_view, tuning)
    return setting, epochs, {**chosen, "chosen_by": f"{chosen['chosen_by']} of the study (dose {m.tuning_dose}, "
                                                    f"view {m.tuning_view})"}




def run_ptychi(cfg: Params, half: str, data_path, tuning, out, report, timing, *, progress: bool = True) -> dict:
    """``measured_ptychi@<half>``: pty-chi's tuned arm on one half, the probe refined from the guess."""
    data = load(cfg, data_path)
    setting, epochs, chosen = _tuned_setting(cfg, tuning)
    m = cfg.measured
    split = split_of(cfg, data, half, data.probe_guess, guess_scale(data))
    torch.set_num_threads(m.threads)
    seed = derive_seed(m.seed, "ptychi", half) % (2**31)
    start = time.perf_counter()
    obj, cost, probe = reconstruct(setting, m.batch_size, split, epochs, seed, refine_probe=True, progress=progress,
                                   desc=f"measured pty-chi half {half}")
    seconds = time.perf_counter() - start
    probe, scale = normalised(probe, split.intensity_scale)
    record = {
        "half": half, "solver": "pty-chi LSQML, probe refined", "arm": "ptychi_tuned",
        "ptychi_version": importlib.metadata.version("ptychi"),
        "data": {"path": str(data_path), "sha256": m.data_sha256, **data.facts},
        "positions": split.patterns, "epochs": epochs, "intensity_scale": scale,
        "settings": {"noise_model": setting.noise_model, "tv_weight": setting.tv_weight, "momentum": setting.momentum,
                     "batch_size": m.batch_size, "seed": m.seed, "threads": m.threads, **chosen},
        "cost_first": float(cost[0]), "cost_final": float(cost[-1]),
    }
    write_result(out, obj, cost, probe, record)
    write_json(report, record)
    write_json(timing, {"stage": f"measured_ptychi@{half}", "seconds": seconds, "epochs": epochs,
                        "positions": split.patterns, "threads": m.threads, "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy measured-ptychi``."""
    cfg = load_params(args.params, MeasuredParams)
    progress = not args.no_progress
    r = run_ptychi(cfg, args.half, args.data, args.tuning, args.out, args.report, args.timing, progress=progress)
    s = r["settings"]
    print(f"measured pty-chi half {r['half']}: {r['positions']} positions, {r['epochs']} LSQML epochs "
          f"({s['noise_model']}, TV {s['tv_weight']:g}, momentum {s['momentum']:g}, probe refined) in "
          f"{r['seconds']:.1f} s, cost {r['cost_first']:.4g} -> {r['cost_final']:.4g} -> {args.out}")


def build_parser(prog: str = "python -m ptychostudy.measured_ptychi") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="measured data: pty-chi's tuned arm on one half of the scan, probe refined",
                       description=MEASURED + "Reconstruct one half with pty-chi LSQML from the analytic probe guess, "
                       "refining the probe, with the settings the tune stage selected on the train split of the study "
                       "cell measured.tuning_dose × measured.tuning_view. Writes the object, cost and refined probe "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    add_arguments(p)
    p.add_argument("--half", choices=("A", "B"), required=True, help="A: even scan indices, B: odd")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON) of the tuning cell")
    stage.add_outputs(p)
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.measured_ptychi") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
