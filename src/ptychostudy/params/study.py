"""params ``study``: the objects, doses and views of the study (the cells are their product, less the cells an
object's subset leaves out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.views import ViewsParams


@dataclass(frozen=True)
class Subset:
    doses: tuple[int, ...] = key("the doses this object runs at (those of study.doses listed here)", kind="dose")
    views: tuple[str, ...] = key("the views it runs on (those of study.views listed here)", kind="name")


@dataclass(frozen=True)
class StudyParams(Section):
    SECTION = "study"
    NEEDS = (ViewsParams,)

    objects: tuple[str, ...] = key("object names (each defined under base.object_files or base.object_patterns)",
                                   kind="name")
    doses: tuple[int, ...] = key("positive photon counts (expected photons per pattern)", kind="dose")
    views: tuple[str, ...] = key("view names (each defined under views.definitions)", kind="name")
    subsets: Mapping[str, Subset] = key("an object run on part of doses × views only (those of study.doses and "
                                        "study.views it lists): its other cells are skipped")

    def check(self, p) -> None:
        for what, values in (("object", self.objects), ("dose", self.doses), ("view", self.views)):
            if len(set(values)) != len(values):
                raise ParamsError(f"study.{what}s lists a {what} twice: {list(values)}")
        for view in self.views:
            if view not in p.views.definitions:
                raise ParamsError(f"study.views names the unknown view {view!r}; allowed views (views.definitions): "
                                  f"{', '.join(p.views.definitions)}")
        for name, subset in self.subsets.items():
            if name not in self.objects:
                raise ParamsError(f"study.subsets names {name!r}, which is not in study.objects ({', '.join(self.objects)})")
            for view in subset.views:
                if view not in p.views.definitions:
                    raise ParamsError(f"study.subsets.{name}.views names the unknown view {view!r}; views "
                                      f"(views.definitions): {', '.join(p.views.definitions)}")
            if not self.object_doses(name) or not self.object_views(name):
                raise ParamsError(f"study.subsets.{name} leaves the object no cell: none of its doses or views is in "
                                  "study.doses or study.views")

    def runs(self, obj: str, dose: int, view: str) -> bool:
        """Whether the cell object × dose × view is in the study (else its stages write a skipped record)."""
        subset = self.subsets.get(obj)
        return subset is None or (dose in subset.doses and view in subset.views)

    def object_views(self, obj: str) -> tuple[str, ...]:
        """The views an object runs on."""
        subset = self.subsets.get(obj)
        return self.views if subset is None else tuple(v for v in self.views if v in subset.views)

    def object_doses(self, obj: str) -> tuple[int, ...]:
        subset = self.subsets.get(obj)
        return self.doses if subset is None else tuple(d for d in self.doses if d in subset.doses)


def per_view(p, where: str, by_view: Mapping) -> None:
    """A per-view mapping (``train.epochs``, ...) names every view of the study and only defined views."""
    missing = [view for view in p.study.views if view not in by_view]
    if missing:
        raise ParamsError(f"{where} has no entry for view {missing[0]!r}")
    unknown = sorted(set(by_view) - set(p.views.definitions))
    if unknown:
        raise ParamsError(f"{where} names the unknown view {unknown[0]!r}; views: {', '.join(p.views.definitions)}")
