"""Where every artefact of the study lives: the one home of split names, file names and paths.

``dvc.yaml`` spells the same paths for DVC (a test renders its stages and compares them with
these functions). Paths are relative to the project root unless a root is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from ptychostudy import StudyError

SPLITS = ("train", "test")
VIEW_SUMMARY = "view.json"  # Phase D: the view's measured facts, or why it was skipped
BUNDLE = "wts.h5.zip"  # Phase E: one trained network
ITERATIVE_ARMS = ("ptychi", "ptychi_tuned", "ptychi_heldout", "gradient", "gradient_heldout")  # Phase F: one file
                  # <arm>.npz per cell (object, cost); *_heldout: the no-calibration protocol's picks (tune.py)
REFINED_ARM = "pinn_refined"  # the view's network refined on the test patterns (refine.py): <arm>.npz beside them
WARMSTART_ARMS = ("pinn_ptychi", "pinn_gradient")  # the tuned solvers started from the view's network (warmstart.py)
STORED_ARMS = ITERATIVE_ARMS + (REFINED_ARM,) + WARMSTART_ARMS  # the arms whose object Phase G reads from data/reconstruct
WARMSTART = Path("reports/reconstruct/warmstart")  # the warmstart stage's curves, one JSON per cell (beside Phase F's records)
TUNING = Path("reports/tuning")  # the tune stage's selection, one JSON per cell
COMPARISON_CSV = "comparison_metrics.csv"  # Phase G, per cell
COMPARISON_JSON = "comparison.json"
COMPARISON_PNG = "comparison.png"

PREPARED = Path("data/prepared")
SIMULATED = Path("data/simulated")
VIEWS = Path("data/views")
MODELS = Path("data/models")
INFERRED = Path("data/infer")  # the infer stage: each cell's network objects on the test split (one .npz)
TRAIN_SHOWN = Path("data/train")  # Phase E: what each job's training figure shows (stage train_figure draws it)
RECONSTRUCTED = Path("data/reconstruct")
PRODUCTS = Path("data/products")  # ptychodus product files: one <arm>.h5 per cell and arm with an object
REPORTS = Path("reports")
MEASURED_DATA = Path("data/base/siemens_star/siemens-star-small.npz.bz2")  # the measured Siemens star (measured.py)
MEASURED = Path("data/measured")  # its results: ptychi_<half>.npz, pinn.npz and the network's bundle
MEASURED_BUNDLE = MEASURED / "pinn.h5.zip"  # a bundle like the study's (not a wts.h5.zip: not one of data/models)
MEASURED_REPORTS = REPORTS / "measured"


def dose_tag(dose: int) -> str:
    """``dose_<dose>``: the folder of one dose."""
    return f"dose_{dose}"


def cell_name(obj: str, dose: int, view: str) -> str:
    """``<object>-dose_<dose>-<view>``: one cell in a flat name (timing files, figures' titles)."""
    return f"{obj}-{dose_tag(dose)}-{view}"


def cell_tag(obj: str, dose: int, view: str) -> str:
    """``<object>/dose_<dose>-<view>``: the report name of one object × dose × view cell (a folder per object)."""
    return f"{obj}/{dose_tag(dose)}-{view}"


def prepared_path(obj: str, root: str | Path = ".") -> Path:
    """The base stage's file of one object: the object on the study's grid, the unit-power probe, their facts."""
    return Path(root) / PREPARED / f"{obj}.npz"


def simulated_file(sim_dir: str | Path, split: str) -> Path:
    """Phase C output of one split inside a dose's folder."""
    return Path(sim_dir) / f"patched_{split}.npz"


def simulated_dir(obj: str, dose: int, root: str | Path = ".") -> Path:
    return Path(root) / SIMULATED / obj / dose_tag(dose)


def view_dir(obj: str, dose: int, view: str, root: str | Path = ".") -> Path:
    return Path(root) / VIEWS / obj / dose_tag(dose) / view


def view_file(directory: str | Path, split: str) -> Path:
    """Phase D output of one split inside a view's folder."""
    return Path(directory) / f"{split}.npz"


def bundle_path(models: str | Path, obj: str, dose: int, view: str) -> Path:
    """Phase E: the bundle of one job under an artefact folder (``data/models``)."""
    return Path(models) / obj / dose_tag(dose) / view / BUNDLE


def train_shown_path(obj: str, dose: int, view: str, root: str | Path = ".") -> Path:
    """Phase E: what one job's training figure shows (``train.write_shown``)."""
    return Path(root) / TRAIN_SHOWN / obj / dose_tag(dose) / f"{view}.npz"


def inferred_path(obj: str, dose: int, view: str, root: str | Path = ".") -> Path:
    """The infer stage's file of one cell: the networks' stitched test-split objects."""
    return Path(root) / INFERRED / obj / dose_tag(dose) / f"{view}.npz"


def reconstruction_dir(obj: str, dose: int, view: str, root: str | Path = ".") -> Path:
    """Phase F's folder of one cell: one ``<arm>.npz`` per iterative arm, and the refined network's."""
    return Path(root) / RECONSTRUCTED / obj / dose_tag(dose) / view


def reconstruction_file(directory: str | Path, arm: str) -> Path:
    if arm not in STORED_ARMS:
        raise StudyError(f"unknown arm {arm!r}; the arms with an object file are {', '.join(STORED_ARMS)}")
    return Path(directory) / f"{arm}.npz"


def reconstruction_path(obj: str, dose: int, view: str, arm: str, root: str | Path = ".") -> Path:
    return reconstruction_file(reconstruction_dir(obj, dose, view, root), arm)


def product_dir(obj: str, dose: int, view: str, root: str | Path = ".") -> Path:
    """The ptychodus product files of one cell (module product.py)."""
    return Path(root) / PRODUCTS / obj / dose_tag(dose) / view


def product_file(directory: str | Path, arm: str) -> Path:
    """One arm's product file inside a cell's product folder."""
    return Path(directory) / f"{arm}.h5"


def measured_ptychi_file(half: str, root: str | Path = ".") -> Path:
    """pty-chi's result (object, cost, refined probe) on one half of the measured scan."""
    return Path(root) / MEASURED / f"ptychi_{half}.npz"


def measured_pinn_file(root: str | Path = ".") -> Path:
    """The measured network's objects (half B, and half A it was trained on)."""
    return Path(root) / MEASURED / "pinn.npz"


def tuning_path(obj: str, dose: int, view: str, root: str | Path = ".") -> Path:
    """The tune stage's selection (and the scores it rests on) for one cell."""
    return Path(root) / TUNING / f"{cell_tag(obj, dose, view)}.json"


def report_path(kind: str, obj: str, dose: int, view: str | None = None, suffix: str = ".json",
                root: str | Path = ".") -> Path:
    """``reports/<kind>/<object>/dose_<d>[-<view>]<suffix>``: the per-stage reports."""
    name = dose_tag(dose) if view is None else f"{dose_tag(dose)}-{view}"
    return Path(root) / REPORTS / kind / obj / f"{name}{suffix}"


def timing_path(kind: str, obj: str, dose: int, view: str, root: str | Path = ".") -> Path:
    """``reports/timing/<kind>-<object>-dose_<d>-<view>.json``: one stage's wall time (not tracked)."""
    return Path(root) / REPORTS / "timing" / f"{kind}-{cell_name(obj, dose, view)}.json"


def compare_dir(reports: str | Path, obj: str, dose: int, view: str) -> Path:
    """Phase G's folder of one cell under a reports folder (``reports/compare``)."""
    return Path(reports) / obj / f"{dose_tag(dose)}-{view}"


def read_view_summary(directory: str | Path, dose: int, view: str) -> dict:
    """A view's ``view.json``; its ``skipped`` and ``reason`` say whether later phases have data."""
    path = Path(directory) / VIEW_SUMMARY
    if not path.is_file():
        raise StudyError(f"{directory}: no {VIEW_SUMMARY}; run the views stage of dose {dose}, view {view} first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: not a readable view summary ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("skipped"), bool):
        raise StudyError(f"{path}: a view summary must be a JSON object with a boolean 'skipped'")
    summary.setdefault("reason", "")
    return summary
