"""params ``measured``: the measured Siemens-star data (module measured.py): no ground truth, judged by agreement."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.train import TrainParams, architecture


@dataclass(frozen=True)
class MeasuredParams(Section):
    SECTION = "measured"
    NEEDS = (TrainParams,)

    data_sha256: str = key("SHA-256 of the measured file", kind="sha256")
    crop: int = key("central detector pixels kept (the object pixel grows by the detector side / crop)", max=4096)
    tuning_object: str = key("pty-chi's settings: the tune stage's selection of this cell: object, ...", kind="name")
    tuning_dose: int = key("... dose ...", kind="dose")
    tuning_view: str = key("... and this view", kind="name")
    batch_size: int = key("LSQML positions per mini-batch", min=1, max=1_000_000)
    seed: int = key("pty-chi's seed, the network's weights, groups and batch order (derived per use)", min=0)
    threads: int = key("pty-chi's torch threads (the network uses train.threads)", min=1, max=256)
    network_view: str = key("the network: train.* with this view's gridsize and canvas", kind="name")
    epochs: int = key("training epochs (of train.steps_per_epoch steps) on half A", min=1, max=100_000)

    def check(self, p) -> None:
        if self.tuning_object not in p.study.objects:
            raise ParamsError(f"measured.tuning_object {self.tuning_object!r} is not in study.objects "
                              f"({', '.join(p.study.objects)}): its tuning selection would not exist")
        if not p.study.runs(self.tuning_object, self.tuning_dose, self.tuning_view):
            raise ParamsError(f"measured: the tuning cell {self.tuning_object} × {self.tuning_dose} × {self.tuning_view} "
                              "is not in the study (study.subsets)")
        if self.tuning_dose not in p.study.doses:
            raise ParamsError(f"measured.tuning_dose {self.tuning_dose} is not in study.doses "
                              f"({', '.join(map(str, p.study.doses))}): its tuning selection would not exist")
        for name in ("tuning_view", "network_view"):
            if getattr(self, name) not in p.study.views:
                raise ParamsError(f"measured.{name} {getattr(self, name)!r} is not in study.views "
                                  f"({', '.join(p.study.views)})")
        if self.crop < 8 or self.crop % 2:
            raise ParamsError(f"measured.crop must be an even number of detector pixels ≥ 8, got {self.crop}")
        try:
            architecture(p, self.network_view, self.tuning_dose, self.crop).check()
        except ValueError as exc:
            raise ParamsError(f"measured: the network of view {self.network_view!r} on {self.crop}-px patterns "
                              f"(measured.crop, train.canvas.{self.network_view}, train.depth) is impossible: {exc}") from None
