"""One object × dose × view cell's objects, as Phase G scores them and the product files hold them: the networks' test-split
objects (the infer stage's file), the stored arms' objects (Phase F, and the refined network's) and the floor.
Read once, checked first (compare.py and product.py both read cells through here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptychostudy import StudyError, layout
from ptychostudy.arms import FLOOR, NETWORK_ARMS, arms
from ptychostudy.dataset import Split, read_dataset
from ptychostudy.npz import read_metadata, read_npz
from ptychostudy.params import Params
from ptychostudy.stored import read_reconstruction


@dataclass
class Cell:
    """One cell's inputs, read and checked before any work."""

    obj: str
    dose: int
    view: str
    summary: dict  # the view's view.json
    arms: list[str]
    paths: dict[str, Path]  # "data", "inferred" and each stored arm -> its input file
    test: Split | None  # the test split, one pattern per group
    inferred: dict[str, np.ndarray]  # network arm -> its stitched test-split object (the infer stage's)
    stored: dict[str, tuple[np.ndarray, np.ndarray, dict]]  # arm -> (object, loss, record) of its file

    def objects(self) -> dict[str, np.ndarray]:
        """The object of every arm: the networks', the stored arms' and the floor's (a blank object)."""
        objects = dict(self.inferred)
        objects.update({name: obj for name, (obj, _, _) in self.stored.items()})
        objects[FLOOR] = np.ones(self.test.truth.shape, dtype=np.complex64)
        return {name: objects[name] for name in self.arms}


def read_inferred(path, obj: str, dose: int, view: str) -> tuple[dict[str, np.ndarray], dict]:
    """The infer stage's file of one cell: (network arm -> object, record)."""
    arrays = read_npz(path, "network inference (infer stage)", hint="run its infer stage first")
    record = read_metadata(arrays, str(path))
    if (record.get("object"), record.get("dose"), record.get("view")) != (obj, dose, view):
        raise StudyError(f"{path}: holds {record.get('object')}, dose {record.get('dose')}, view {record.get('view')}, "
                         f"not {obj}, dose {dose}, view {view}")
    return {name: arrays[name] for name in record.get("arms", [])}, record


def load(cfg: Params, obj: str, dose, view: str, view_dir, inferred, reconstructions) -> Cell:
    obj, dose = cfg.object(obj), cfg.dose(dose)
    definition = cfg.view(view)
    summary = layout.read_view_summary(view_dir, dose, view)
    if summary["skipped"]:
        return Cell(obj, dose, view, summary, [], {}, None, {}, {})
    names = arms(cfg, obj, view)
    paths = {"data": layout.view_file(view_dir, "test")}
    if any(name in NETWORK_ARMS for name in names):
        paths["inferred"] = Path(inferred)
    stored_arms = [name for name in layout.STORED_ARMS if name in names]
    for name in stored_arms:
        paths[name] = layout.reconstruction_file(reconstructions, name)  # (the blank arm reads nothing)
    missing = [f"{path} (needed for the {name} arm{'s' if name == 'inferred' else ''})"
               for name, path in paths.items() if not Path(path).is_file()]
    if missing:
        raise StudyError("missing input: " + "; ".join(missing) + "; run the earlier stages first")
    test = Split.from_arrays(read_dataset(paths["data"], require_groups=definition.gridsize > 1), 1)
    truth = test.truth
    stored = {}
    for name in stored_arms:
        recon, loss, meta = read_reconstruction(paths[name])
        if meta.get("skipped") or recon.shape != truth.shape:
            raise StudyError(f"{paths[name]}: holds no {truth.shape[0]}×{truth.shape[1]} object for dose {dose}, view {view}")
        stored[name] = (recon, loss, meta)
    networks = {}
    if "inferred" in paths:
        networks, _ = read_inferred(paths["inferred"], obj, dose, view)
        for name in (n for n in names if n in NETWORK_ARMS):
            if name not in networks or networks[name].shape != truth.shape:
                raise StudyError(f"{paths['inferred']}: holds no {truth.shape[0]}×{truth.shape[1]} object of the {name} arm")
    return Cell(obj, dose, view, summary, names, paths, test,
                {name: networks[name] for name in names if name in NETWORK_ARMS}, stored)
