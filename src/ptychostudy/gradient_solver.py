"""The Poisson-likelihood gradient solver (arm ``gradient``): Adam on log-amplitude and phase of an object that
starts on a coarse grid and is refined level by level, through the study's forward model (``physics``). Used by
Phase F (gradient.py), the selection (tune.py) and the replicates (replicate.py)."""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, physics
from ptychostudy.dataset import Split
from ptychostudy.io import read_json
from ptychostudy.optim import Adam
from ptychostudy.params.gradient import GradientParams

ARM = "gradient"  # the arm's name (the calibration protocol's stop), and its key in the tune stage's selection
PICKS = {"gradient": "selected", "gradient_heldout": "selected_heldout"}  # arm -> its protocol's pick (tune.py)
EPS = 1e-6  # added to λ inside the logarithm (counts are whole numbers; λ of a dark pixel can reach 0)


def _upsample(field: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return torch.nn.functional.interpolate(field[None, None], size=shape, mode="bilinear", align_corners=False)[0, 0]


def _grid(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    return math.ceil(shape[0] / factor), math.ceil(shape[1] / factor)


def schedule(settings: GradientParams, stop: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """(level factor, steps) to run: every level in order, ``steps_per_level`` each, up to and
    including ``stop`` = (level, steps) when given."""
    plan = []
    for factor in settings.levels:
        if stop is not None and factor == stop[0]:
            return plan + [(factor, stop[1])]
        plan.append((factor, settings.steps_per_level))
    if stop is not None:
        raise StudyError(f"gradient: the selected level {stop[0]} is not in gradient.levels {list(settings.levels)}")
    return plan


def position(settings: GradientParams, stop: tuple[int, int]) -> int:
    """How many steps into the full schedule the stop (level, steps) lies."""
    return sum(steps for _, steps in schedule(settings, stop))


def curve_points(plan: list[tuple[int, int]], marks) -> list[tuple[int, int, int]]:
    """The checkpoints of a run of ``plan`` at which its curve is recorded: each level's end and the step counts
    ``marks`` (of a level's steps) within it, as (level factor, step within the level, steps from the start).
    The warmstart stage scores a run's objects there; the gradient stage keeps the arm's run's objects there."""
    ends = {steps for _, steps in plan} | {int(m) for m in marks}
    points, done = [], 0
    for factor, steps in plan:
        points += [(factor, s, done + s) for s in sorted(ends) if 0 < s <= steps]
        done += steps
    return points


def poisson_nll(expected: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean Poisson negative log-likelihood (without the log k! constant) of ``counts`` under ``expected``."""
    return (expected - counts * torch.log(expected + EPS)).mean()


def initial_fields(obj: np.ndarray, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-amplitude, phase) on ``grid`` of a starting object (H, W) on the truth's grid: the complex object
    averaged over each sample's area (never its phase: a mean of wrapped phases is no phase)."""
    t = torch.from_numpy(np.asarray(obj, dtype=np.complex64))
    if tuple(t.shape) != grid:
        parts = [torch.nn.functional.adaptive_avg_pool2d(part[None, None], grid)[0, 0] for part in (t.real, t.imag)]
        t = torch.complex(*parts)
    modulus = t.abs()
    if not bool(torch.isfinite(modulus).all()) or float(modulus.min()) <= 0:
        raise StudyError("gradient: the starting object must be finite and nowhere zero (it is a log-amplitude)")
    return torch.log(modulus).to(torch.float32), torch.angle(t).to(torch.float32)


def solve(split: Split, settings: GradientParams, plan: list[tuple[int, int]], seed: int, *, progress: bool = True,
          desc: str = "gradient", checkpoints=(), on_checkpoint=None,
          initial: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``plan``; returns (object (H, W) complex64, Poisson NLL per step). After each step count in
    ``checkpoints`` of a level the object so far goes to ``on_checkpoint(level, step, object)``. The object
    starts blank on the first level's grid unless ``initial`` (on the truth's grid: ``initial_fields``)."""
    shape = tuple(split.truth.shape)
    size = split.probe.shape[-1]
    counts = split.amplitude.double().pow(2).to(torch.float32)
    positions = torch.from_numpy(np.asarray(split.positions, dtype=np.float64))
    y0 = physics.top_left(positions[:, 0], size).to(torch.float32)
    x0 = physics.top_left(positions[:, 1], size).to(torch.float32)
    probe = split.probe
    n = split.patterns
    batch = min(settings.batch, n)
    generator = torch.Generator().manual_seed(seed)
    if initial is None:
        log_amplitude = torch.zeros(_grid(shape, plan[0][0]))
        phase = torch.zeros_like(log_amplitude)
    else:
        log_amplitude, phase = initial_fields(initial, _grid(shape, plan[0][0]))

    def current():
        with torch.no_grad():
            return torch.polar(torch.exp(_upsample(log_amplitude, shape)), _upsample(phase, shape))

    losses = []
    bar = tqdm(total=sum(steps for _, steps in plan), desc=desc, unit="step", disable=not progress)
    for factor, steps in plan:
        grid = _grid(shape, factor)
        if tuple(log_amplitude.shape) != grid:  # refine: the finer grid starts from the coarser object
            log_amplitude, phase = (torch.nn.functional.interpolate(f[None, None], size=grid, mode="bilinear",
                                                                    align_corners=False)[0, 0]
                                    for f in (log_amplitude, phase))
        log_amplitude = log_amplitude.detach().requires_grad_(True)
        phase = phase.detach().requires_grad_(True)
        optimiser = Adam([log_amplitude, phase], lr=settings.learning_rate)
        for step in range(1, steps + 1):
            index = torch.randperm(n, generator=generator)[:batch] if batch < n else torch.arange(n)
            obj = torch.polar(torch.exp(_upsample(log_amplitude, shape)), _upsample(phase, shape))
            patches = physics.extract_patches(obj, y0[index], x0[index], size)
            loss = poisson_nll(physics.expected_intensity(probe, patches, split.intensity_scale), counts[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            bar.update()
            if step in checkpoints and on_checkpoint is not None:
                on_checkpoint(factor, step, current().numpy().astype(np.complex64))
    bar.close()
    return current().numpy().astype(np.complex64), np.asarray(losses, dtype=np.float64)


def setup(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def read_selection(path, dose: int, view: str, arm: str = ARM) -> tuple[int, int]:
    """(level, steps) the tune stage selected for this cell under ``arm``'s protocol."""
    record = read_json(path, "tuning selection", hint="run the tune stage first")
    if record.get("dose") != dose or record.get("view") != view or record.get("split") != "train":
        raise StudyError(f"{path}: not a train-split selection for dose {dose}, view {view}")
    selected = record.get(ARM, {}).get(PICKS[arm])
    if not isinstance(selected, dict):
        raise StudyError(f"{path}: holds no selection {PICKS[arm]!r} for the gradient solver")
    return int(selected["level"]), int(selected["steps"])
