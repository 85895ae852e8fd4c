"""params ``study``: the doses and views of the study (the cells are their product)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.views import ViewsParams


@dataclass(frozen=True)
class StudyParams(Section):
    SECTION = "study"
    NEEDS = (ViewsParams,)

    doses: tuple[int, ...] = key("positive photon counts (expected photons per pattern)", kind="dose")
    views: tuple[str, ...] = key("view names (each defined under views.definitions)", kind="name")

    def check(self, p) -> None:
        for what, values in (("dose", self.doses), ("view", self.views)):
            if len(set(values)) != len(values):
                raise ParamsError(f"study.{what}s lists a {what} twice: {list(values)}")
        for view in self.views:
            if view not in p.views.definitions:
                raise ParamsError(f"study.views names the unknown view {view!r}; allowed views (views.definitions): "
                                  f"{', '.join(p.views.definitions)}")


def per_view(p, where: str, by_view: Mapping) -> None:
    """A per-view mapping (``train.epochs``, ...) names every view of the study and only defined views."""
    missing = [view for view in p.study.views if view not in by_view]
    if missing:
        raise ParamsError(f"{where} has no entry for view {missing[0]!r}")
    unknown = sorted(set(by_view) - set(p.views.definitions))
    if unknown:
        raise ParamsError(f"{where} names the unknown view {unknown[0]!r}; views: {', '.join(p.views.definitions)}")
