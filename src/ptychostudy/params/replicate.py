"""params ``replicate``: the seed-to-seed spread (module replicate.py): every arm of these cells rerun with other seeds."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.study import StudyParams


@dataclass(frozen=True)
class ReplicateParams(Section):
    SECTION = "replicate"
    NEEDS = (StudyParams,)

    objects: tuple[str, ...] = key("object names (cells: every object × dose × view here)", kind="name")
    doses: tuple[int, ...] = key("positive photon counts (cells: every object × dose × view here)", kind="dose")
    views: tuple[str, ...] = key("view names", kind="name")
    seeds: int = key("extra runs of every arm per cell with other seeds", min=1, max=100)
    noise_redraws: int = key("extra runs of every arm per cell on the test counts drawn again", min=0, max=100)
    threads: int = key("torch threads of the stage's pty-chi and gradient reruns (the stage holds train.threads cores "
                       "for its networks; its solvers may use them too)", min=1, max=256)

    def check(self, p) -> None:
        for obj in self.objects:
            if obj not in p.study.objects:
                raise ParamsError(f"replicate.objects lists {obj!r}, which is not in study.objects ({', '.join(p.study.objects)})")
            for dose in self.doses:
                for view in self.views:
                    if not p.study.runs(obj, dose, view):
                        raise ParamsError(f"replicate: the cell {obj} × {dose} × {view} is not in the study (study.subsets)")
        for dose in self.doses:
            if dose not in p.study.doses:
                raise ParamsError(f"replicate.doses lists {dose}, which is not in study.doses "
                                  f"({', '.join(map(str, p.study.doses))})")
        for view in self.views:
            if view not in p.study.views:
                raise ParamsError(f"replicate.views lists {view!r}, which is not in study.views ({', '.join(p.study.views)})")
