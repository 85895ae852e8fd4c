"""pty-chi LSQML as the study runs it (arms ``ptychi``, ``ptychi_tuned`` and ``ptychi_heldout``): the task built from a split, the
run, and the settings of each arm. Used by Phase F (reconstruct.py), the selection (tune.py), the replicates
(replicate.py) and the measured data (measured.py)."""

from __future__ import annotations

import contextlib
import logging
import types
import warnings

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, torchvision_shim
from ptychostudy.dataset import Split
from ptychostudy.io import read_json, sha256_file
from ptychostudy.params import Params
from ptychostudy.params.reconstruct import PtychiSetting


def _ptychi():
    """Import pty-chi (with the torchvision stand-in where needed), quietly."""
    torchvision_shim.install()
    try:
        import ptychi  # noqa: F401  (the package must import before its api)
        from ptychi import api
        from ptychi.api.task import PtychographyTask
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise StudyError(f"pty-chi is not installed ({exc}); run `make install` (README: set-up)") from None
    _deterministic_polyfit()
    _fast_complex_exp()
    logging.getLogger("ptychi").setLevel(logging.WARNING)
    root = logging.getLogger()
    if not any(isinstance(f, _EdgePaddingNotice) for f in root.filters):
        root.addFilter(_EdgePaddingNotice())
    return api, PtychographyTask


LSTSQ_DRIVER = "gelsd"  # SVD-based; reads no caller-supplied pivots


def polyfit(x: torch.Tensor, y: torch.Tensor, deg: int = 1) -> torch.Tensor:
    """pty-chi's ``maths.polyfit`` (coefficients from high to low order) with a deterministic solver.

    pty-chi fits the log of its momentum correlations with ``torch.linalg.lstsq`` and the CPU
    default driver ``gelsy``. PyTorch (2.13 here) hands ``gelsy`` a pivot array allocated without
    zeroing, and ``gelsy`` reads it as input (non-zero entries fix columns), so the result depends on
    what that memory held before: the same 4 × 2 fit gave three different last digits within one
    process (pytorch/pytorch#187411). The friction it sets scales every momentum step, so about one
    pty-chi process in twenty took another floating-point path from epoch 7 on. ``gelsd`` solves the
    same problem (by SVD) and reads no such input.
    """
    powers = x[:, None] ** torch.arange(deg, -1, -1, device=x.device)
    return torch.linalg.lstsq(powers, y, rcond=None, driver=LSTSQ_DRIVER)[0]


class TorchWithPolarExp(types.ModuleType):
    """``torch`` as pty-chi's ``image_proc`` module sees it, but for ``exp`` of a complex tensor: computed as
    ``polar(exp(re), im)``.

    pty-chi shifts every probe patch by its sub-pixel position in Fourier space, multiplying by
    ``torch.exp(1j · phase ramp)``. PyTorch's complex ``exp`` (2.13, CPU) takes about 27 % of an LSQML epoch
    (cProfile, the baseline view: 5.3 s of 19 s for 10 epochs); ``torch.polar`` of the same angle takes a third of
    the time. For a purely imaginary argument (the ramp: exp(±0) = 1 exactly) both give the same numbers bit for
    bit on the study's machines — tested on the ramp's values and on whole reconstructions (tests/test_reconstruct.py),
    so a CPU where they differ fails the tests rather than changing the arm. Everything else is torch's own.
    """

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def exp(input, *args, **kwargs):
        if isinstance(input, torch.Tensor) and input.is_complex() and not args and not kwargs:
            return torch.polar(torch.exp(input.real), input.imag)
        return torch.exp(input, *args, **kwargs)


class IeeeSqrt:
    """While active (``with IEEE_SQRT:``), torch's CPU ``sqrt`` is NumPy's: the processor's IEEE square root,
    correctly rounded, the same bits on every x86-64 CPU.

    PyTorch's CPU ``sqrt`` of float tensors is Intel MKL's vector math: not correctly rounded, and rounded
    differently on Intel and AMD processors (the cause of the Adam steps that parted, docs/determinism.md;
    ``optim.Adam`` takes NumPy's root for that reason). pty-chi's LSQML takes 16 of them an epoch (its Gaussian
    gradient ``1 − √y/√ŷ``, its preconditioner, its loss): on the Intel Xeon of 2026-12-07 about 1 % of their
    elements were one unit in the last place off the IEEE root, and the configured arm's object at 1e5 dense came
    out other bytes than the AMD EPYC's while training and the gradient solver matched byte for byte. The
    override is an ``aten::sqrt`` CPU kernel registered for the duration of a pty-chi call only (build, run,
    forward), so our own code never sees it. float32/float64 take ``numpy.sqrt``; complex inputs NumPy's complex
    root; integers the default float dtype's; half precision float32's root rounded back (exact for ``sqrt``).
    Re-entrant (a counter)."""

    def __init__(self):
        self._depth = 0
        self._library = None

    @staticmethod
    def kernel(t: torch.Tensor) -> torch.Tensor:
        x = t.detach()
        back = None
        if x.dtype in (torch.float16, torch.bfloat16):
            back, x = x.dtype, x.float()
        elif not (x.is_floating_point() or x.is_complex()):
            x = x.to(torch.get_default_dtype())
        a = x.resolve_conj().resolve_neg().numpy()
        out = np.empty_like(a)
        with np.errstate(invalid="ignore"):  # torch gives NaN for a negative silently
            np.sqrt(a, out=out)
        result = torch.from_numpy(out)
        return result if back is None else result.to(back)

    def __enter__(self):
        if self._depth == 0:
            with warnings.catch_warnings():  # "overriding a previously registered kernel": that is the point
                warnings.simplefilter("ignore")
                library = torch.library.Library("aten", "IMPL")
                library.impl("sqrt", self.kernel, "CPU")
            self._library = library
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            self._library._destroy()  # torch's own kernel is back
            self._library = None
        return False


IEEE_SQRT = IeeeSqrt()
EXACT_SQRT = True  # off: pty-chi keeps torch's sqrt (the test that shows the two differ)


def ieee_sqrt():
    """The context a pty-chi call runs in (``IeeeSqrt``); a no-op context where ``EXACT_SQRT`` is off."""
    return IEEE_SQRT if EXACT_SQRT else contextlib.nullcontext()


POLAR_EXP = True  # off: pty-chi's image_proc keeps torch's complex exp (the test that compares the two)


def _fast_complex_exp() -> None:
    """Give pty-chi's ``image_proc`` (its Fourier shifts) ``TorchWithPolarExp`` as its ``torch``."""
    from ptychi import image_proc

    if POLAR_EXP and not isinstance(image_proc.torch, TorchWithPolarExp):
        image_proc.torch = TorchWithPolarExp()


def _deterministic_polyfit() -> None:
    """Install ``polyfit`` as pty-chi's (its LSQML and OPR code call ``maths.polyfit`` by attribute)."""
    from ptychi import maths

    maths.polyfit = polyfit


class _EdgePaddingNotice(logging.Filter):
    """Drop pty-chi's notice that patches at the scan's edge reach one pixel beyond the object.

    Its Fourier-shift extractor cuts N + 2 pixels; for positions whose patch touches the
    edge of the (ground-truth-sized) object it pads with zeros and says so on every batch.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("A probe-grid object tensor with a lateral size")


def ptychi_probe(split: Split) -> np.ndarray:
    """The probe in pty-chi's units: (1, 1, N, N) complex64, ``s · P / N``."""
    size = split.probe.shape[-1]
    return (split.intensity_scale * split.probe.numpy().astype(np.complex128) / size).astype(np.complex64)[None, None]


def origin(shape: tuple[int, int]) -> tuple[list[float], int, int]:
    """(pty-chi's position origin, y offset, x offset) that put its object on our grid: positions handed over as
    ``c − offset`` (whole-pixel offsets, so that pty-chi's rounding of a position falls where ours does on odd
    sides too) and the origin half a pixel before the offset (pty-chi cuts from p − (N − 1)/2, we from c − N/2)."""
    dy, dx = shape[0] // 2, shape[1] // 2
    return [dy - 0.5, dx - 0.5], dy, dx


def build_task(setting, batch_size: int, split: Split, epochs: int, seed: int, *, refine_probe: bool = False,
               initial_object: np.ndarray | None = None):
    """A pty-chi LSQML task on ``split``'s patterns, reconstructing on the truth's grid (``setting``: noise
    model, TV weight and momentum, a ``config.PtychiSetting`` or the ``reconstruct`` section).

    The probe is known and fixed; with ``refine_probe`` (measured data, where ``split.probe`` is only a
    starting guess) pty-chi refines it too, rescales its intensity to the data in the first epoch and
    removes the object-probe scale ambiguity, as it does by default. The object starts blank (all ones) unless
    ``initial_object`` (on the truth's grid) is given."""
    api, PtychographyTask = _ptychi()
    shape = split.truth.shape
    o = api.LSQMLOptions()
    r = o.reconstructor_options
    r.default_device = api.Devices.CPU
    r.num_epochs = epochs
    r.batch_size = batch_size
    r.noise_model = api.NoiseModels.GAUSSIAN if setting.noise_model == "gaussian" else api.NoiseModels.POISSON
    r.random_seed = seed
    r.rescale_probe_intensity_in_first_epoch = refine_probe  # a known probe is exact
    if setting.momentum > 0:
        r.momentum_acceleration_gain = setting.momentum
        r.batching_mode = api.BatchingModes.COMPACT  # LSQML applies object momentum to compact batches only
    o.data_options.fft_shift = True  # our patterns have zero frequency at the centre
    ob = o.object_options
    ob.optimizable = True
    ob.optimizer = api.Optimizers.SGD
    ob.step_size = 1
    ob.pixel_size_m = 1.0  # geometry enters through the probe and positions only (far field)
    ob.remove_object_probe_ambiguity.enabled = refine_probe
    tv_weight = getattr(setting, "tv_weight", 0.0)
    if tv_weight > 0:  # pty-chi's total-variation regulariser of the object, after every epoch
        ob.total_variation.enabled = True
        ob.total_variation.weight = tv_weight
    ob.patch_interpolation_method = api.PatchInterpolationMethods.FOURIER
    ob.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    pos_origin, dy, dx = origin(shape)
    ob.position_origin_coords = pos_origin
    o.probe_options.optimizable = refine_probe
    if refine_probe:
        o.probe_options.optimizer = api.Optimizers.SGD
        o.probe_options.step_size = 1
    o.probe_position_options.optimizable = False
    counts = split.amplitude.double() ** 2
    with ieee_sqrt():
        task = PtychographyTask(
            o,
            diffraction_data=counts.to(torch.float32),
            object_data=(torch.ones((1, *shape), dtype=torch.complex64) if initial_object is None
                         else torch.from_numpy(np.asarray(initial_object, dtype=np.complex64)[None].copy())),
            probe_data=torch.from_numpy(ptychi_probe(split)),
            probe_position_x_px=torch.from_numpy(split.positions[:, 1] - dx),
            probe_position_y_px=torch.from_numpy(split.positions[:, 0] - dy),
        )
    seed_batches(task, seed)
    return task


def seed_batches(task, seed: int) -> None:
    """Make the random batches follow ``seed``: pty-chi's data loader shuffles with a generator of its own,
    created unseeded (``torch.Generator()``), so its random-batch order was the same whatever the seed (the
    configured arm's replicates were identical). Compact batches (momentum > 0) draw from the global generator,
    which ``random_seed`` seeds."""
    loader = getattr(task.reconstructor, "dataloader", None)
    generator = getattr(loader, "generator", None)
    if generator is not None:
        generator.manual_seed(seed)


def predicted_counts(split: Split, obj: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """pty-chi's own forward path, the one its LSQML fits: the expected counts (n, N, N) of every pattern of
    ``split`` from ``obj`` (on the truth's grid) with ``split``'s probe and positions as ``build_task``
    hands them over, zero frequency at the centre like our patterns. float64."""
    setting = PtychiSetting(noise_model="poisson", tv_weight=0.0, momentum=0.0)
    task = build_task(setting, batch_size, split, 1, 0, initial_object=obj)
    forward = task.reconstructor.forward_model
    out = []
    with torch.no_grad(), ieee_sqrt():
        for start in range(0, split.patterns, batch_size):
            y = forward.forward(torch.arange(start, min(start + batch_size, split.patterns)))
            out.append(torch.fft.fftshift(y, dim=(-2, -1)).double().numpy())
    return np.concatenate(out)


def reconstruct(setting, batch_size: int, split: Split, epochs: int, seed: int, *, refine_probe: bool = False,
                progress: bool = True, desc: str = "pty-chi", checkpoints=(), on_checkpoint=None,
                initial_object: np.ndarray | None = None):
    """Run LSQML; returns (object (H, W) complex64, cost per epoch, probe (N, N) complex64 in ``split``'s
    units: the probe that with ``split.intensity_scale`` gives the predicted counts, = ``split.probe``
    unless ``refine_probe``). After each epoch count in ``checkpoints`` the object so far is handed to
    ``on_checkpoint(epoch, object)`` (the tune stage). The object starts blank unless ``initial_object``."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        # pty-chi converts a tensor that requires grad to a float for its loss log
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
        task = build_task(setting, batch_size, split, epochs, seed, refine_probe=refine_probe,
                          initial_object=initial_object)
        for epoch in tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not progress):
            with ieee_sqrt():
                task.run(n_epochs=1)
            if epoch in checkpoints and on_checkpoint is not None:
                on_checkpoint(epoch, np.asarray(task.get_data_to_cpu("object", as_numpy=True)[0], dtype=np.complex64))
        table = task.reconstructor.loss_tracker.table
        cost = np.asarray(table["loss"], dtype=np.float64)
        obj = task.get_data_to_cpu("object", as_numpy=True)[0]
        probe = np.asarray(task.get_data_to_cpu("probe", as_numpy=True), dtype=np.complex128)[0, 0]
    probe = probe * split.probe.shape[-1] / split.intensity_scale  # the inverse of ``ptychi_probe``
    return np.asarray(obj, dtype=np.complex64), cost, probe.astype(np.complex64)


PICKS = {"ptychi_tuned": "selected", "ptychi_heldout": "selected_heldout"}  # arm -> its protocol's pick (tune.py)


def read_selection(path, dose: int, view: str, solver: str, pick: str = "selected") -> dict:
    """The tune stage's selection for one solver of one cell (written by ``tune.run``): ``pick`` "selected"
    (the calibration protocol) or "selected_heldout" (no calibration)."""
    record = read_json(path, "tuning selection", hint="run the tune stage first")
    if record.get("dose") != dose or record.get("view") != view:
        raise StudyError(f"{path}: holds the selection of dose {record.get('dose')}, view {record.get('view')}, "
                         f"not of dose {dose}, view {view}")
    if record.get("split") != "train":
        raise StudyError(f"{path}: a selection must be made on the train split, this one says {record.get('split')!r}")
    if record.get("skipped"):
        return {}
    selected = record.get(solver, {}).get(pick)
    if not isinstance(selected, dict):
        raise StudyError(f"{path}: holds no selection {pick!r} for {solver}")
    return selected


def settings_of(cfg: Params, arm: str, dose: int, view: str, tuning) -> tuple[PtychiSetting, int, dict]:
    """(setting, epochs, how it was chosen) of a pty-chi arm in one cell."""
    if arm == "ptychi":
        r = cfg.reconstruct
        setting = PtychiSetting(noise_model=r.noise_model, tv_weight=0.0, momentum=r.momentum)
        return setting, r.epochs[view], {"chosen_by": "params.yaml reconstruct.* (the original study's configuration)"}
    if arm not in PICKS:
        raise StudyError(f"unknown pty-chi arm {arm!r}; choose one of ptychi, {', '.join(PICKS)}")
    if tuning is None:
        raise StudyError(f"the {arm} arm needs --tuning (the tune stage's selection)")
    selected = read_selection(tuning, dose, view, "ptychi", PICKS[arm])
    if not selected:
        raise StudyError(f"{tuning}: the tune stage skipped dose {dose}, view {view}, but the view has data; rerun it")
    setting = PtychiSetting(noise_model=selected["noise_model"], tv_weight=float(selected["tv_weight"]),
                            momentum=float(selected["momentum"]))
    protocol = "calibration: train truth" if arm == "ptychi_tuned" else "no calibration: held-out patterns' NLL"
    return setting, int(selected["epochs"]), {"chosen_by": f"{tuning}: selected on the train split ({protocol})",
                                              "tuning_sha256": sha256_file(tuning)}
