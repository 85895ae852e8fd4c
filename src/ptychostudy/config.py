"""params.yaml -> validated, frozen dataclasses.

Every key is required and every unknown key is an error: a typo must never fall back
silently to a default. Each problem is reported as one sentence naming the key and
what is allowed (``ConfigError``, exit code 2 on the command line).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from ptychostudy import StudyError
from ptychostudy.architecture import INPUTS as NETWORK_INPUTS, Architecture


class ConfigError(StudyError):
    """params.yaml is malformed or describes an impossible study."""


@dataclass(frozen=True)
class StudySection:
    doses: tuple[int, ...]
    views: tuple[str, ...]


@dataclass(frozen=True)
class BaseSection:
    probe_sha256: str
    object_sha256: str
    object_zoom: int
    probe_zoom: int
    patch_size: int


@dataclass(frozen=True)
class SimulateSection:
    seed: int
    positions_per_split: int
    split_axis: str
    guard_band_px: int
    threads: int


@dataclass(frozen=True)
class ViewDefinition:
    gridsize: int
    overlap: float | None  # None: all positions (no spacing filter)

    @property
    def group_size(self) -> int:
        return self.gridsize * self.gridsize


@dataclass(frozen=True)
class ViewsSection:
    probe_power_fraction: float
    neighbours: int
    groups_per_seed: int
    min_positions: int
    subsample_seed: int
    grouping_seed: int
    definitions: Mapping[str, ViewDefinition]


@dataclass(frozen=True)
class TrainSection:
    seed: int
    threads: int
    accelerator: str
    batch_size: int
    learning_rate: float
    learning_rate_final: float
    steps_per_epoch: int
    epochs: Mapping[str, int]
    filters: int
    depth: int
    canvas: Mapping[str, int]
    support: float
    amplitude_max: float
    skips: bool
    inputs: str
    object_stride: Mapping[int, int]  # dose -> px per object sample: a job uses the largest listed dose ≤ its own
    augment: str  # none | dihedral: each group's frame in a random orientation while training (model.orient)
    eval_every: int  # epochs between scores while training (0: the last epoch only; the last is always scored)
    eval_patterns: int  # scores while training: at most this many patterns per split,
    eval_stitch_fraction: float  # stitched with these settings (the study's comparison uses ``infer``)
    eval_phase_sync: bool


@dataclass(frozen=True)
class InferSection:
    """How a trained network reconstructs a split (Phase G): its own section, so that changing
    the comparison's stitching never reruns training."""

    stitch_fraction: float
    phase_sync: bool
    batch: int
    threads: int
    accelerator: str


@dataclass(frozen=True)
class RefineSection:
    """The test-time refinement arm ``pinn_refined`` (module refine.py): each view's trained network
    fine-tuned, self-supervised through the physics, on the test split's own patterns (never their truth)."""

    steps: Mapping[str, int]  # per view: Adam steps on the test split
    checkpoints: tuple[float, ...]  # fractions of the steps at which the curve is recorded (0 and 1 included)
    batch_size: int
    learning_rate: float  # cosine decay from this ...
    learning_rate_final: float  # ... to this at the last step
    seed: int
    threads: int
    accelerator: str


@dataclass(frozen=True)
class ReconstructSection:
    epochs: Mapping[str, int]
    batch_size: int
    noise_model: str
    momentum: float
    seed: int
    threads: int


@dataclass(frozen=True)
class PtychiSetting:
    """One point of the tuned pty-chi arm's grid (LSQML; batch size, seed and threads from ``reconstruct``)."""

    noise_model: str
    tv_weight: float  # pty-chi's object total-variation regulariser (0 = off)
    momentum: float  # LSQML object momentum (0 = off: random batches; > 0: compact batches)


@dataclass(frozen=True)
class GradientSection:
    """The classical gradient reference arm (module gradient.py): Poisson likelihood, Adam, an object
    that starts on a coarse grid and is refined level by level."""

    levels: tuple[int, ...]  # px per object sample at each level, coarse to fine
    steps_per_level: int
    batch: int
    learning_rate: float
    seed: int
    threads: int


@dataclass(frozen=True)
class TuneSection:
    """The selection stage (module tune.py): the tuned arms' settings chosen on each view's train split."""

    ptychi_grid: tuple[PtychiSetting, ...]
    ptychi_epochs: Mapping[str, tuple[int, ...]]  # per view: scored at each, one run as long as the last
    gradient_checkpoints: tuple[int, ...]  # steps within each gradient level at which it is scored
    threads: int


@dataclass(frozen=True)
class ReplicateSection:
    """The seed-to-seed spread (module replicate.py): every arm of these cells rerun with other seeds."""

    doses: tuple[int, ...]  # cells: every dose here × every view here (each in study.*)
    views: tuple[str, ...]
    seeds: int  # extra runs of every arm per cell (the pipeline's own run is the first)


@dataclass(frozen=True)
class CompareSection:
    scanned_threshold: float
    max_shift_px: float
    ms_ssim_sigma: float
    frc_taper: float


@dataclass(frozen=True)
class ProductSection:
    """ptychodus product files (module product.py): the physical scales the synthetic study is given.

    The study is computed in pixels and photons; these nominal values only label its products: the
    object pixel is λ·z / (N·detector pixel), with λ from the photon energy and N = base.patch_size."""

    photon_energy_eV: float
    detector_distance_m: float
    detector_pixel_m: float
    exposure_time_s: float


@dataclass(frozen=True)
class MeasuredSection:
    """The measured Siemens-star data (module measured.py): no ground truth, judged by agreement."""

    data_sha256: str
    crop: int  # central detector pixels kept (the object pixel grows by the detector side / crop)
    tuning_dose: int  # pty-chi's settings: the tune stage's selection of this cell of the study
    tuning_view: str
    batch_size: int  # LSQML positions per mini-batch
    seed: int  # pty-chi's seed, the network's weights, groups and batch order (derived per use)
    threads: int  # pty-chi's torch threads (the network uses train.threads)
    network_view: str  # the network: train.* with this view's gridsize and canvas
    epochs: int  # training epochs (of train.steps_per_epoch steps) on half A


@dataclass(frozen=True)
class Config:
    study: StudySection
    base: BaseSection
    simulate: SimulateSection
    views: ViewsSection
    train: TrainSection
    infer: InferSection
    refine: RefineSection
    reconstruct: ReconstructSection
    gradient: GradientSection
    tune: TuneSection
    replicate: ReplicateSection
    compare: CompareSection
    product: ProductSection
    measured: MeasuredSection

    def view(self, name: str) -> ViewDefinition:
        if name not in self.views.definitions:
            raise ConfigError(
                f"unknown view {name!r}; the views defined in params.yaml are "
                f"{', '.join(sorted(self.views.definitions))}"
            )
        return self.views.definitions[name]

    def dose(self, value) -> int:
        dose = parse_dose(value, "--dose")
        if dose not in self.study.doses:
            raise ConfigError(
                f"dose {dose} is not in study.doses ({', '.join(map(str, self.study.doses))})"
            )
        return dose

    def object_stride(self, dose: float) -> int:
        """px per object sample of the network at ``dose`` photons per pattern: ``train.object_stride``'s
        entry of the largest listed dose ≤ ``dose``."""
        listed = [d for d in self.train.object_stride if d <= dose]
        if not listed:
            raise ConfigError(f"train.object_stride lists no dose at or below {dose:g} photons per pattern "
                              f"(its smallest is {min(self.train.object_stride)}); add one, for example 0")
        return self.train.object_stride[max(listed)]

    def architecture(self, view: str, dose: float, size: int | None = None) -> Architecture:
        """The network of one view's jobs at ``dose`` photons per pattern, from ``base`` and ``train``
        (``size``: N other than ``base.patch_size``, for the measured data's cropped patterns)."""
        t = self.train
        gridsize = self.view(view).gridsize
        return Architecture(
            size=self.base.patch_size if size is None else size,
            channels=gridsize * gridsize,
            canvas=t.canvas[view],
            filters=t.filters,
            depth=t.depth,
            support=t.support,
            amplitude_max=t.amplitude_max,
            skips=t.skips,
            inputs=t.inputs,
            stride=self.object_stride(dose),
        )


SECTIONS = {
    "study": StudySection,
    "base": BaseSection,
    "simulate": SimulateSection,
    "views": ViewsSection,
    "train": TrainSection,
    "infer": InferSection,
    "refine": RefineSection,
    "reconstruct": ReconstructSection,
    "gradient": GradientSection,
    "tune": TuneSection,
    "replicate": ReplicateSection,
    "compare": CompareSection,
    "product": ProductSection,
    "measured": MeasuredSection,
}
SPLIT_AXES = ("y", "x")
ACCELERATORS = ("cpu", "cuda")
AUGMENTATIONS = ("none", "dihedral")
NOISE_MODELS = ("gaussian", "poisson")


def _check_scalar(value, tp, key: str):
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(tp)  # pragma: no cover - schema bug


def _check_keys(raw: Any, allowed: list[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys {', '.join(allowed)}; got {raw!r}")
    unknown = sorted(set(map(str, raw)) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown key {where + '.' if where != 'params.yaml' else ''}{unknown[0]}; "
            f"allowed keys here: {', '.join(allowed)}"
        )
    missing = [k for k in allowed if k not in raw]
    if missing:
        raise ConfigError(
            f"missing key {where + '.' if where != 'params.yaml' else ''}{missing[0]}; "
            f"every key of the study design must be set explicitly"
        )


def parse_dose(value, key: str) -> int:
    """A dose (expected photons per pattern) as a positive integer."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a positive number of photons, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a positive number of photons, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{key} must be positive (photons per pattern), got {value!r}")
    if float(value) != int(value):
        raise ConfigError(
            f"{key} must be a whole number of photons (it names the folder dose_<int>), got {value!r}"
        )
    return int(value)


def _section(name: str, raw: Any):
    cls = SECTIONS[name]
    fields = dataclasses.fields(cls)
    hints = typing.get_type_hints(cls)
    _check_keys(raw, [f.name for f in fields], name)
    values = {}
    for field in fields:
        key = f"{name}.{field.name}"
        tp = hints[field.name]
        value = raw[field.name]
        if name == "measured" and field.name == "tuning_dose":
            values[field.name] = parse_dose(value, key)
        elif name in ("study", "replicate") and field.name == "doses":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{key} must be a non-empty list of positive photon counts, got {value!r}")
            doses = tuple(parse_dose(v, f"{key}[{i}]") for i, v in enumerate(value))
            if len(set(doses)) != len(doses):
                raise ConfigError(f"{key} lists a dose twice: {list(doses)}")
            values[field.name] = doses
        elif name in ("study", "replicate") and field.name == "views":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{key} must be a non-empty list of view names, got {value!r}")
            views = tuple(_check_scalar(v, str, f"{key}[{i}]") for i, v in enumerate(value))
            if len(set(views)) != len(views):
                raise ConfigError(f"{key} lists a view twice: {list(views)}")
            values[field.name] = views
        elif name == "views" and field.name == "definitions":
            values[field.name] = _definitions(value, key)
        elif ((name in ("train", "reconstruct") and field.name == "epochs") or (name == "train" and field.name == "canvas")
              or (name == "refine" and field.name == "steps")):
            what = {"epochs": "number of epochs", "canvas": "frame side in pixels", "steps": "number of steps"}[field.name]
            if not isinstance(value, dict) or not value:
                raise ConfigError(f"{key} must map each view name to its {what}, got {value!r}")
            values[field.name] = {
                str(view): _check_scalar(number, int, f"{key}.{view}") for view, number in sorted(value.items())
            }
        elif name == "train" and field.name == "object_stride":
            if not isinstance(value, dict) or not value:
                raise ConfigError(f"{key} must map a dose (photons per pattern, from which on it applies) to px per "
                                  f"object sample, got {value!r}")
            values[field.name] = {
                _check_scalar(dose, int, f"{key} (a dose)"): _check_scalar(k, int, f"{key}.{dose}")
                for dose, k in sorted(value.items())
            }
        elif name == "refine" and field.name == "checkpoints":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{key} must be a list of fractions of refine.steps from 0 to 1, got {value!r}")
            values[field.name] = tuple(float(_check_scalar(v, float, f"{key}[{i}]")) for i, v in enumerate(value))
        elif name == "gradient" and field.name == "levels":
            values[field.name] = _int_list(value, key, "object grid factors (px per sample), coarse to fine")
        elif name == "tune" and field.name == "gradient_checkpoints":
            values[field.name] = _int_list(value, key, "step counts")
        elif name == "tune" and field.name == "ptychi_epochs":
            if not isinstance(value, dict) or not value:
                raise ConfigError(f"{key} must map each view name to a list of epoch counts, got {value!r}")
            values[field.name] = {str(view): _int_list(v, f"{key}.{view}", "epoch counts")
                                  for view, v in sorted(value.items())}
        elif name == "tune" and field.name == "ptychi_grid":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{key} must be a non-empty list of settings "
                                  f"{{noise_model, tv_weight, momentum}}, got {value!r}")
            values[field.name] = tuple(_ptychi_setting(v, f"{key}[{i}]") for i, v in enumerate(value))
        else:
            values[field.name] = _check_scalar(value, tp, key)
    return cls(**values)


def _int_list(value: Any, key: str, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be a non-empty list of {what}, got {value!r}")
    return tuple(_check_scalar(v, int, f"{key}[{i}]") for i, v in enumerate(value))


def _ptychi_setting(raw: Any, key: str) -> PtychiSetting:
    fields = [f.name for f in dataclasses.fields(PtychiSetting)]
    _check_keys(raw, fields, key)
    setting = PtychiSetting(
        noise_model=_check_scalar(raw["noise_model"], str, f"{key}.noise_model"),
        tv_weight=_check_scalar(raw["tv_weight"], float, f"{key}.tv_weight"),
        momentum=_check_scalar(raw["momentum"], float, f"{key}.momentum"),
    )
    _check_ptychi_setting(setting, key)
    return setting


def _check_ptychi_setting(setting, key: str) -> None:
    """The checks every pty-chi setting obeys (``reconstruct`` and each ``tune.ptychi_grid`` entry)."""
    if setting.noise_model not in NOISE_MODELS:
        raise ConfigError(f"{key}.noise_model must be one of {', '.join(NOISE_MODELS)}; got {setting.noise_model!r}")
    if not 0.0 <= setting.momentum < 1.0:
        raise ConfigError(f"{key}.momentum must lie in [0, 1) (0 = off), got {setting.momentum}")
    if getattr(setting, "tv_weight", 0.0) < 0:
        raise ConfigError(f"{key}.tv_weight must be 0 (off) or more, got {setting.tv_weight}")


def _definitions(raw: Any, key: str) -> Mapping[str, ViewDefinition]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{key} must map each view name to its gridsize and overlap, got {raw!r}")
    out = {}
    for name, spec in raw.items():
        where = f"{key}.{name}"
        _check_keys(spec, ["gridsize", "overlap"], where)
        gridsize = _check_scalar(spec["gridsize"], int, f"{where}.gridsize")
        if gridsize < 1:
            raise ConfigError(f"{where}.gridsize must be 1 or more, got {gridsize}")
        overlap = spec["overlap"]
        if overlap is not None:
            overlap = _check_scalar(overlap, float, f"{where}.overlap")
            if not 0.0 <= overlap < 1.0:
                raise ConfigError(
                    f"{where}.overlap must lie in [0, 1) (a fraction of the probe diameter), "
                    f"or be null for all positions; got {overlap}"
                )
        out[str(name)] = ViewDefinition(gridsize=gridsize, overlap=overlap)
    return dict(sorted(out.items()))


def _cross_checks(cfg: Config) -> None:
    b, s, v = cfg.base, cfg.simulate, cfg.views
    for view in cfg.study.views:
        if view not in v.definitions:
            raise ConfigError(
                f"study.views names the unknown view {view!r}; allowed views (views.definitions): "
                f"{', '.join(v.definitions)}"
            )
    for key, value in (("base.object_zoom", b.object_zoom), ("base.probe_zoom", b.probe_zoom)):
        if value < 1:
            raise ConfigError(f"{key} must be an integer zoom of 1 or more, got {value}")
    if b.patch_size < 8 or b.patch_size % 2:
        raise ConfigError(f"base.patch_size must be an even number of pixels ≥ 8, got {b.patch_size}")
    for key, value in (("base.probe_sha256", b.probe_sha256), ("base.object_sha256", b.object_sha256),
                       ("measured.data_sha256", cfg.measured.data_sha256)):
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ConfigError(f"{key} must be 64 lowercase hex digits, got {value!r}")
    for key, value in (
        ("simulate.seed", s.seed),
        ("views.subsample_seed", v.subsample_seed),
        ("views.grouping_seed", v.grouping_seed),
    ):
        if value < 0:
            raise ConfigError(f"{key} must be a non-negative integer, got {value}")
    if s.threads < 1:
        raise ConfigError(f"simulate.threads must be 1 or more, got {s.threads}")
    if s.positions_per_split < 1:
        raise ConfigError(f"simulate.positions_per_split must be 1 or more, got {s.positions_per_split}")
    if s.split_axis not in SPLIT_AXES:
        raise ConfigError(f"simulate.split_axis must be one of {', '.join(SPLIT_AXES)}; got {s.split_axis!r}")
    if s.guard_band_px < b.patch_size:
        raise ConfigError(
            f"simulate.guard_band_px must be at least the patch size base.patch_size = {b.patch_size} px, "
            f"got {s.guard_band_px}"
        )
    if not 0.0 < v.probe_power_fraction < 1.0:
        raise ConfigError(
            f"views.probe_power_fraction must lie in (0, 1) (e.g. 0.9), got {v.probe_power_fraction}"
        )
    if v.min_positions < 1:
        raise ConfigError(f"views.min_positions must be 1 or more, got {v.min_positions}")
    if v.groups_per_seed < 1:
        raise ConfigError(f"views.groups_per_seed must be 1 or more, got {v.groups_per_seed}")
    _check_train(cfg)
    _check_infer(cfg)
    _check_refine(cfg)
    _check_reconstruct(cfg)
    _check_gradient(cfg)
    _check_tune(cfg)
    _check_replicate(cfg)
    _check_compare(cfg)
    _check_product(cfg)
    _check_measured(cfg)
    for name, view in v.definitions.items():
        if v.neighbours < view.group_size:
            raise ConfigError(
                f"views.neighbours (K = {v.neighbours}) must be at least C = gridsize² = "
                f"{view.group_size} of view {name!r}"
            )


def _check_train(cfg: Config) -> None:
    t = cfg.train
    if t.accelerator not in ACCELERATORS:
        raise ConfigError(f"train.accelerator must be one of {', '.join(ACCELERATORS)}; got {t.accelerator!r}")
    if t.seed < 0:
        raise ConfigError(f"train.seed must be a non-negative integer, got {t.seed}")
    if t.inputs not in NETWORK_INPUTS:
        raise ConfigError(f"train.inputs must be one of {', '.join(NETWORK_INPUTS)}; got {t.inputs!r}")
    for dose, k in t.object_stride.items():
        if dose < 0 or k < 1:
            raise ConfigError(f"train.object_stride maps doses ≥ 0 to grids of 1 px per sample or more, got {dose}: {k}")
    if t.augment not in AUGMENTATIONS:
        raise ConfigError(f"train.augment must be one of {', '.join(AUGMENTATIONS)}; got {t.augment!r}")
    if t.augment == "dihedral" and t.inputs != "backprojection":
        raise ConfigError("train.augment: dihedral turns the object-space frame; it needs train.inputs: backprojection")
    for key in ("threads", "batch_size", "steps_per_epoch", "filters", "depth", "eval_patterns"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key} must be 1 or more, got {getattr(t, key)}")
    if t.eval_every < 0:
        raise ConfigError(f"train.eval_every must be 0 (the last epoch only) or more, got {t.eval_every}")
    if not 0.0 < t.learning_rate_final <= t.learning_rate:
        raise ConfigError(
            f"train.learning_rate ({t.learning_rate}) and train.learning_rate_final ({t.learning_rate_final}) "
            "must satisfy 0 < learning_rate_final ≤ learning_rate"
        )
    for key in ("support", "eval_stitch_fraction"):
        value = getattr(t, key)
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"train.{key} must lie in (0, 1] (a fraction of the patch side), got {value}")
    _check_stitch(t.eval_stitch_fraction, "train.eval_stitch_fraction", t.support)
    _check_per_view(cfg, "train", "canvas", t.canvas)
    _check_epochs(cfg, "train", t.epochs)
    for view in cfg.study.views:
        for dose in cfg.study.doses:
            try:
                cfg.architecture(view, dose).check()  # the network's own shape rules (architecture.py)
            except ValueError as exc:
                raise ConfigError(
                    f"train: the network of view {view!r} (base.patch_size, train.canvas.{view}, train.depth, ...) "
                    f"is impossible: {exc}"
                ) from None


def _check_stitch(fraction: float, key: str, support: float) -> None:
    if fraction > support:
        raise ConfigError(
            f"{key} ({fraction}) must not exceed train.support ({support}): only predicted pixels can be stitched"
        )


def _check_infer(cfg: Config) -> None:
    i = cfg.infer
    if not 0.0 < i.stitch_fraction <= 1.0:
        raise ConfigError(f"infer.stitch_fraction must lie in (0, 1] (a fraction of the patch side), got {i.stitch_fraction}")
    _check_stitch(i.stitch_fraction, "infer.stitch_fraction", cfg.train.support)
    for key in ("batch", "threads"):
        if getattr(i, key) < 1:
            raise ConfigError(f"infer.{key} must be 1 or more, got {getattr(i, key)}")
    if i.accelerator not in ACCELERATORS:
        raise ConfigError(f"infer.accelerator must be one of {', '.join(ACCELERATORS)}; got {i.accelerator!r}")


def _check_refine(cfg: Config) -> None:
    r = cfg.refine
    _check_per_view(cfg, "refine", "steps", r.steps)
    for view, steps in r.steps.items():
        if steps < 1:
            raise ConfigError(f"refine.steps.{view} must be 1 or more, got {steps}")
    c = list(r.checkpoints)
    if c[0] != 0.0 or c[-1] != 1.0 or c != sorted(set(c)):
        raise ConfigError(f"refine.checkpoints must be increasing fractions of refine.steps from 0.0 (the trained "
                          f"network) to 1.0 (the arm's object), got {c}")
    for key in ("batch_size", "threads"):
        if getattr(r, key) < 1:
            raise ConfigError(f"refine.{key} must be 1 or more, got {getattr(r, key)}")
    if r.seed < 0:
        raise ConfigError(f"refine.seed must be a non-negative integer, got {r.seed}")
    if not 0.0 < r.learning_rate_final <= r.learning_rate:
        raise ConfigError(f"refine.learning_rate ({r.learning_rate}) and refine.learning_rate_final "
                          f"({r.learning_rate_final}) must satisfy 0 < learning_rate_final ≤ learning_rate")
    if r.accelerator not in ACCELERATORS:
        raise ConfigError(f"refine.accelerator must be one of {', '.join(ACCELERATORS)}; got {r.accelerator!r}")


def _check_per_view(cfg: Config, section: str, key: str, by_view: Mapping[str, int]) -> None:
    missing = [view for view in cfg.study.views if view not in by_view]
    if missing:
        raise ConfigError(f"{section}.{key} has no entry for view {missing[0]!r}")
    unknown = sorted(set(by_view) - set(cfg.views.definitions))
    if unknown:
        raise ConfigError(
            f"{section}.{key} names the unknown view {unknown[0]!r}; views: {', '.join(cfg.views.definitions)}"
        )


def _check_epochs(cfg: Config, section: str, epochs_by_view: Mapping[str, int]) -> None:
    _check_per_view(cfg, section, "epochs", epochs_by_view)
    for view, epochs in epochs_by_view.items():
        if epochs < 1:
            raise ConfigError(f"{section}.epochs.{view} must be 1 or more, got {epochs}")


def _check_reconstruct(cfg: Config) -> None:
    it = cfg.reconstruct
    _check_epochs(cfg, "reconstruct", it.epochs)
    for key in ("batch_size", "threads"):
        if getattr(it, key) < 1:
            raise ConfigError(f"reconstruct.{key} must be 1 or more, got {getattr(it, key)}")
    if it.seed < 0:
        raise ConfigError(f"reconstruct.seed must be a non-negative integer, got {it.seed}")
    _check_ptychi_setting(it, "reconstruct")


def _check_gradient(cfg: Config) -> None:
    g = cfg.gradient
    for key in ("steps_per_level", "batch", "threads"):
        if getattr(g, key) < 1:
            raise ConfigError(f"gradient.{key} must be 1 or more, got {getattr(g, key)}")
    if g.seed < 0:
        raise ConfigError(f"gradient.seed must be a non-negative integer, got {g.seed}")
    if not g.learning_rate > 0:
        raise ConfigError(f"gradient.learning_rate must be positive, got {g.learning_rate}")
    if any(f < 1 for f in g.levels) or list(g.levels) != sorted(set(g.levels), reverse=True):
        raise ConfigError(f"gradient.levels must be distinct factors ≥ 1 from coarse to fine "
                          f"(e.g. [8, 4, 2, 1]), got {list(g.levels)}")


def _check_tune(cfg: Config) -> None:
    t = cfg.tune
    if t.threads < 1:
        raise ConfigError(f"tune.threads must be 1 or more, got {t.threads}")
    _check_per_view(cfg, "tune", "ptychi_epochs", t.ptychi_epochs)
    for view, epochs in t.ptychi_epochs.items():
        if epochs[0] < 1 or list(epochs) != sorted(set(epochs)):
            raise ConfigError(f"tune.ptychi_epochs.{view} must be increasing epoch counts ≥ 1, got {list(epochs)}")
    steps = t.gradient_checkpoints
    if steps[0] < 1 or list(steps) != sorted(set(steps)) or steps[-1] > cfg.gradient.steps_per_level:
        raise ConfigError(f"tune.gradient_checkpoints must be increasing step counts from 1 to "
                          f"gradient.steps_per_level ({cfg.gradient.steps_per_level}), got {list(steps)}")


def _check_replicate(cfg: Config) -> None:
    r = cfg.replicate
    for dose in r.doses:
        if dose not in cfg.study.doses:
            raise ConfigError(f"replicate.doses lists {dose}, which is not in study.doses "
                              f"({', '.join(map(str, cfg.study.doses))})")
    for view in r.views:
        if view not in cfg.study.views:
            raise ConfigError(f"replicate.views lists {view!r}, which is not in study.views ({', '.join(cfg.study.views)})")
    if r.seeds < 1:
        raise ConfigError(f"replicate.seeds must be 1 or more (extra runs per arm), got {r.seeds}")


def _check_compare(cfg: Config) -> None:
    c = cfg.compare
    if not 0.0 < c.scanned_threshold < 1.0:
        raise ConfigError(
            f"compare.scanned_threshold must lie in (0, 1) (a fraction of the peak illumination), got {c.scanned_threshold}"
        )
    if c.max_shift_px < 0:
        raise ConfigError(f"compare.max_shift_px must be 0 or more, got {c.max_shift_px}")
    if c.ms_ssim_sigma < 0:
        raise ConfigError(f"compare.ms_ssim_sigma must be 0 (off) or more, got {c.ms_ssim_sigma}")
    if not 0.0 <= c.frc_taper <= 0.5:
        raise ConfigError(f"compare.frc_taper must lie in [0, 0.5] (a fraction of each side), got {c.frc_taper}")


def _check_product(cfg: Config) -> None:
    for key, value in dataclasses.asdict(cfg.product).items():
        if value <= 0:
            raise ConfigError(f"product.{key} must be positive, got {value}")


def _check_measured(cfg: Config) -> None:
    m = cfg.measured
    if m.tuning_dose not in cfg.study.doses:
        raise ConfigError(f"measured.tuning_dose {m.tuning_dose} is not in study.doses "
                          f"({', '.join(map(str, cfg.study.doses))}): its tuning selection would not exist")
    for key in ("tuning_view", "network_view"):
        if getattr(m, key) not in cfg.study.views:
            raise ConfigError(f"measured.{key} {getattr(m, key)!r} is not in study.views ({', '.join(cfg.study.views)})")
    for key in ("batch_size", "threads", "epochs"):
        if getattr(m, key) < 1:
            raise ConfigError(f"measured.{key} must be 1 or more, got {getattr(m, key)}")
    if m.seed < 0:
        raise ConfigError(f"measured.seed must be a non-negative integer, got {m.seed}")
    if m.crop < 8 or m.crop % 2:
        raise ConfigError(f"measured.crop must be an even number of detector pixels ≥ 8, got {m.crop}")
    try:
        cfg.architecture(m.network_view, m.tuning_dose, m.crop).check()
    except ValueError as exc:
        raise ConfigError(f"measured: the network of view {m.network_view!r} on {m.crop}-px patterns "
                          f"(measured.crop, train.canvas.{m.network_view}, train.depth) is impossible: {exc}") from None


def config_from_dict(raw: Any) -> Config:
    if raw is None:
        raise ConfigError("params.yaml is empty")
    _check_keys(raw, list(SECTIONS), "params.yaml")
    cfg = Config(**{name: _section(name, raw[name]) for name in SECTIONS})
    _cross_checks(cfg)
    return cfg


def load_config(path: str | Path = "params.yaml") -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def check_patch_size(cfg: Config, probe_side: int) -> None:
    """The patch size must equal the (zoomed) probe's side."""
    expected = probe_side * cfg.base.probe_zoom
    if cfg.base.patch_size != expected:
        raise ConfigError(
            f"base.patch_size = {cfg.base.patch_size} disagrees with the probe: a {probe_side}×{probe_side} "
            f"probe zoomed {cfg.base.probe_zoom}× is {expected} px; set base.patch_size: {expected}"
        )


def as_dict(cfg: Config) -> dict:
    """A JSON-friendly copy of the validated configuration (for metadata)."""

    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    return convert(cfg)


def cli(args) -> None:
    """``ptychostudy check-params``: validate params.yaml and print the design."""
    cfg = load_config(args.params)
    print(yaml.safe_dump(as_dict(cfg), sort_keys=False), end="")
    print(f"{args.params}: ok")
