"""params ``tune``: the selection stage (module tune.py): the tuned arms' settings chosen on each view's train split,
under two protocols (a known calibration region; held-out patterns' likelihood, no truth)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.reconstruct import NOISE_MODELS, ReconstructParams, check_momentum
from ptychostudy.params.study import StudyParams, per_view


@dataclass(frozen=True)
class PtychiSearch:
    """The search over pty-chi LSQML settings (Optuna: seeded TPE, run sequentially, median pruning)."""

    trials: int = key("trials per protocol (the configured setting is the first)", min=1, max=1000)
    startup_trials: int = key("trials sampled at random before TPE models the scores", min=1, max=1000)
    prune_after: int = key("completed trials before the median pruner may stop one", min=1, max=1000)
    seed: int = key("the samplers' seed", min=0)
    noise_models: tuple[str, ...] = key("LSQML likelihoods to try", choices=NOISE_MODELS)
    tv_weight: tuple[float, ...] = key("[low, high] of the total-variation weight (log-uniform; off is a choice too)",
                                       gt=0, max=1e6)
    momentum: tuple[float, ...] = key("momentum gains to try (0 = off: random batches)")


@dataclass(frozen=True)
class TuneParams(Section):
    SECTION = "tune"
    NEEDS = (StudyParams, GradientParams, ReconstructParams)

    heldout_fraction: float = key("fraction of the train positions held out of every fit (the no-truth criterion)",
                                  gt=0, max=0.5)
    heldout_seed: int = key("the held-out positions' draw", min=0)
    ptychi_search: PtychiSearch = key("the pty-chi search")
    ptychi_epochs: Mapping[str, tuple[int, ...]] = key("each view name to a list of epoch counts", max=100_000)
    gradient_checkpoints: tuple[int, ...] = key("step counts")
    threads: int = key("torch threads of the whole stage", min=1, max=256)

    def check(self, p) -> None:
        s = self.ptychi_search
        for momentum in s.momentum:
            check_momentum(momentum, "tune.ptychi_search")
        if len(s.tv_weight) != 2 or not s.tv_weight[0] < s.tv_weight[1]:
            raise ParamsError(f"tune.ptychi_search.tv_weight must be [low, high] with low < high, got {list(s.tv_weight)}")
        r = p.reconstruct  # the configured arm's setting must lie in the search space (the search's first trial)
        if r.noise_model not in s.noise_models:
            raise ParamsError(f"tune.ptychi_search.noise_models must hold reconstruct.noise_model ({r.noise_model}): "
                              "the configured setting is the search's first trial")
        if r.momentum not in s.momentum:
            raise ParamsError(f"tune.ptychi_search.momentum must hold reconstruct.momentum ({r.momentum:g}): "
                              "the configured setting is the search's first trial")
        per_view(p, "tune.ptychi_epochs", self.ptychi_epochs)
        for view, epochs in self.ptychi_epochs.items():
            if epochs[0] < 1 or list(epochs) != sorted(set(epochs)):
                raise ParamsError(f"tune.ptychi_epochs.{view} must be increasing epoch counts ≥ 1, got {list(epochs)}")
            if view in r.epochs and r.epochs[view] not in epochs:
                raise ParamsError(f"tune.ptychi_epochs.{view} must hold reconstruct.epochs.{view} ({r.epochs[view]}): "
                                  f"the search never stops short of the configured arm, got {list(epochs)}")
        steps = self.gradient_checkpoints
        if steps[0] < 1 or list(steps) != sorted(set(steps)) or steps[-1] > p.gradient.steps_per_level:
            raise ParamsError(f"tune.gradient_checkpoints must be increasing step counts from 1 to "
                              f"gradient.steps_per_level ({p.gradient.steps_per_level}), got {list(steps)}")
