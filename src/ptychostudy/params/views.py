"""params ``views``: Phase D's overlap views (module views.py) and how it forms groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key


@dataclass(frozen=True)
class ViewDefinition:
    gridsize: int = key("patterns per group side (C = gridsize²)", min=1, max=8)
    overlap: float | None = key("fraction of the probe diameter neighbours share; null: all positions")

    @property
    def group_size(self) -> int:
        return self.gridsize * self.gridsize


@dataclass(frozen=True)
class ViewsParams(Section):
    SECTION = "views"

    probe_power_fraction: float = key("the probe diameter D holds this fraction of the probe's power")
    neighbours: int = key("K: groups are C-subsets of a seed's K nearest positions", min=1, max=64)
    groups_per_seed: int = key("at most this many of the C(K, C) subsets per seed", min=1, max=10_000)
    min_positions: int = key("a view with fewer positions in a split is skipped", min=1)
    subsample_seed: int = key("order of the Poisson-disc selection", min=0)
    grouping_seed: int = key("choice and order of groups", min=0)
    definitions: Mapping[str, ViewDefinition] = key("each view name to its gridsize and overlap")

    def check(self, p) -> None:
        if not 0.0 < self.probe_power_fraction < 1.0:
            raise ParamsError(f"views.probe_power_fraction must lie in (0, 1) (e.g. 0.9), got {self.probe_power_fraction}")
        for name, view in self.definitions.items():
            if view.overlap is not None and not 0.0 <= view.overlap < 1.0:
                raise ParamsError(f"views.definitions.{name}.overlap must lie in [0, 1) (a fraction of the probe "
                                  f"diameter), or be null for all positions; got {view.overlap}")
            if self.neighbours < view.group_size:
                raise ParamsError(f"views.neighbours (K = {self.neighbours}) must be at least C = gridsize² = "
                                  f"{view.group_size} of view {name!r}")

    def view(self, name: str) -> ViewDefinition:
        if name not in self.definitions:
            raise ParamsError(f"unknown view {name!r}; the views defined in params.yaml are "
                              f"{', '.join(sorted(self.definitions))}")
        return self.definitions[name]
