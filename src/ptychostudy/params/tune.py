"""params ``tune``: the selection stage (module tune.py): the tuned arms' settings chosen on each view's train split."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.reconstruct import PtychiSetting, check_momentum
from ptychostudy.params.study import StudyParams, per_view


@dataclass(frozen=True)
class TuneParams(Section):
    SECTION = "tune"
    NEEDS = (StudyParams, GradientParams)

    ptychi_grid: tuple[PtychiSetting, ...] = key("settings {noise_model, tv_weight, momentum}")
    ptychi_epochs: Mapping[str, tuple[int, ...]] = key("each view name to a list of epoch counts", max=100_000)
    gradient_checkpoints: tuple[int, ...] = key("step counts")
    threads: int = key("torch threads of the whole stage", min=1, max=256)

    def check(self, p) -> None:
        for i, setting in enumerate(self.ptychi_grid):
            check_momentum(setting.momentum, f"tune.ptychi_grid[{i}]")
        per_view(p, "tune.ptychi_epochs", self.ptychi_epochs)
        for view, epochs in self.ptychi_epochs.items():
            if epochs[0] < 1 or list(epochs) != sorted(set(epochs)):
                raise ParamsError(f"tune.ptychi_epochs.{view} must be increasing epoch counts ≥ 1, got {list(epochs)}")
        steps = self.gradient_checkpoints
        if steps[0] < 1 or list(steps) != sorted(set(steps)) or steps[-1] > p.gradient.steps_per_level:
            raise ParamsError(f"tune.gradient_checkpoints must be increasing step counts from 1 to "
                              f"gradient.steps_per_level ({p.gradient.steps_per_level}), got {list(steps)}")
