"""Phase E: the network, its physics, the bundle round trip, determinism and a collapse gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ptychostudy import physics
from ptychostudy.params.train import architecture
from ptychostudy.bundle import PROBE_WEIGHT, BundleError, load_bundle, read_bundle, write_bundle
from ptychostudy.dataset import Split, read_dataset
from ptychostudy.metrics import score_arm
from ptychostudy.model import (
    Architecture, Backprojection, PhysicsHead, Reconstructor, frame_corners, place_members, poisson_deviance,
)
from ptychostudy.stitch import stitch
from ptychostudy.train import run as train_run
from ptychostudy.training import headline_scores


def quick_scores(recon, truth, mask, cfg):
    """The per-epoch numbers training logs, from the one scoring path (no registration here)."""
    import dataclasses

    settings = dataclasses.replace(cfg.compare, max_shift_px=0.0)
    result = score_arm(recon, truth, {"featured": mask, "scanned": mask}, settings, ("featured",), full=False)
    return headline_scores(result.scores["featured"])


@pytest.fixture(scope="module")
def trained(tiny_cfg, tiny_views, tmp_path_factory):
    """The dense job of the tiny profile, trained twice in separate folders."""
    runs = []
    for attempt in range(2):
        out = tmp_path_factory.mktemp(f"train{attempt}")
        record = train_run(
            tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], out / "run1084/dose_100000/dense/wts.h5.zip",
            out / "record.json", out / "history.csv", out / "timing.json", out / "shown.npz", progress=False,
        )
        runs.append((out, record))
    return runs


def test_training_is_bit_reproducible(trained):
    (a, ra), (b, rb) = trained
    assert (a / "run1084/dose_100000/dense/wts.h5.zip").read_bytes() == (b / "run1084/dose_100000/dense/wts.h5.zip").read_bytes()
    assert ra["bundle"]["sha256"] == rb["bundle"]["sha256"]
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    assert (a / "record.json").read_bytes() == (b / "record.json").read_bytes()
    assert (a / "shown.npz").read_bytes() == (b / "shown.npz").read_bytes()
    # the figure is its own stage, drawn from what training wrote for it: the same bytes from the same data
    from ptychostudy import train_figure

    for out in (a, b):
        assert train_figure.main(["--data", str(out / "shown.npz"), "--figure", str(out / "figure.png")]) == 0
    assert (a / "figure.png").read_bytes() == (b / "figure.png").read_bytes()
    assert (a / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record, history, shown = train_figure.read_shown(a / "shown.npz")
    assert record == json.loads((a / "record.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1)) and set(shown) == {"train", "test"}


def test_job_record_history_and_timing(trained, tiny_cfg):
    out, record = trained[0]
    assert record["steps"] == tiny_cfg.train.epochs["dense"] * tiny_cfg.train.steps_per_epoch
    assert record["bundle"]["path"] == "run1084/dose_100000/dense/wts.h5.zip"  # object/dose/view under the models folder
    assert len(record["bundle"]["sha256"]) == 64
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,loss,train_amplitude_r")
    assert len(lines) == 1 + tiny_cfg.train.epochs["dense"]
    timing = json.loads((out / "timing.json").read_text())
    assert timing["train_seconds"] > 0 and timing["threads"] == tiny_cfg.train.threads
    assert math.isfinite(record["final_loss"]) and record["final_loss"] > 0


def test_scoring_every_epoch_leaves_the_network_unchanged(trained, tiny_cfg, tiny_views, tmp_path):
    """train.eval_every only adds scores to the history: the same weights (the bundle records the setting), the same
    final scores."""
    import dataclasses

    out, record = trained[0]
    assert tiny_cfg.train.eval_every == 0 and tiny_cfg.train.epochs["dense"] == 2
    cfg = tiny_cfg.replace(train=dataclasses.replace(tiny_cfg.train, eval_every=1))
    every = train_run(cfg, "run1084", 100000, "dense", tiny_views["dense"], tmp_path / "run1084/dose_100000/dense/wts.h5.zip",
                      tmp_path / "r.json", tmp_path / "h.csv", tmp_path / "t.json", tmp_path / "f.npz", progress=False)
    weights, description = read_bundle(tmp_path / "run1084/dose_100000/dense/wts.h5.zip")
    first, first_description = read_bundle(out / "run1084/dose_100000/dense/wts.h5.zip")
    assert weights.keys() == first.keys() and all(np.array_equal(weights[k], first[k]) for k in weights)
    assert description["params"]["train"]["eval_every"] == 1 and first_description["params"]["train"]["eval_every"] == 0
    assert every["scores"] == record["scores"]
    last_only = [line.split(",") for line in (out / "history.csv").read_text().splitlines()[1:]]
    scored = [line.split(",") for line in (tmp_path / "h.csv").read_text().splitlines()[1:]]
    assert last_only[0][2:] == [""] * 6 and all(last_only[1][2:]) and all(v for row in scored for v in row)
    assert [row[:2] for row in last_only] == [row[:2] for row in scored] and last_only[1] == scored[1]


def test_loaded_bundle_reproduces_the_models_output(trained, tiny_views):
    out, _ = trained[0]
    loaded = load_bundle(out / "run1084/dose_100000/dense/wts.h5.zip")
    assert loaded.model.arch.channels == 4
    data = read_dataset(tiny_views["dense"] / "test.npz", require_groups=True)
    split = Split.from_arrays(data, 2)
    amp = split.amplitude[torch.from_numpy(split.groups[:3])]
    offsets = split.offsets(split.groups[:3])
    with torch.no_grad():
        first = loaded.model(amp, offsets)
        again = load_bundle(out / "run1084/dose_100000/dense/wts.h5.zip").model(amp, offsets)
    assert first.shape == (3, 4, 64, 64) and first.dtype == torch.complex64
    assert torch.equal(first, again)
    # the same weights loaded by hand into a fresh network give the same numbers
    weights, description = read_bundle(out / "run1084/dose_100000/dense/wts.h5.zip")
    probe = torch.view_as_complex(torch.from_numpy(weights.pop(PROBE_WEIGHT)))
    fresh = Reconstructor(Architecture(**description["architecture"]), probe, description["intensity_scale"], description["input_scale"])
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    with torch.no_grad():
        assert torch.equal(fresh.eval()(amp, offsets), first)
        # the members' offsets matter: the same patterns placed elsewhere give another object
        assert not torch.allclose(loaded.model(amp, offsets.flip(1)), first)


def _tamper(src, dst, *, weights=None, description=None):
    w, d = read_bundle(src)
    if weights:
        weights(w)
    if description:
        description(d)
    for key in ("format", "format_version", "weights"):
        d.pop(key, None)
    write_bundle(dst, w, d)
    return dst


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(description=lambda d: d["architecture"].update(filters="4")), "'filters' must be int"),
        (dict(description=lambda d: d["architecture"].pop("depth")), "architecture field 'depth'"),
        (dict(description=lambda d: d["architecture"].update(filters=8)), "has shape"),
        (dict(description=lambda d: d.update(kind="other")), "field 'kind'"),
        (dict(description=lambda d: d.update(intensity_scale="big")), "'intensity_scale' must be float"),
        (dict(weights=lambda w: w.pop(PROBE_WEIGHT)), PROBE_WEIGHT),
        (dict(weights=lambda w: w.update(extra=np.zeros(3, np.float32))), "'extra' does not belong"),
    ],
)
def test_load_bundle_refuses_inconsistent_bundles(trained, tmp_path, change, message):
    out, _ = trained[0]
    bad = _tamper(out / "run1084/dose_100000/dense/wts.h5.zip", tmp_path / "bad.zip", **change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bad)


def test_a_skipped_job_leaves_a_bundle_that_says_why(tiny_cfg, tiny_views, tmp_path):
    folder = tmp_path / "view"
    folder.mkdir()
    (folder / "view.json").write_text(json.dumps({"skipped": True, "reason": "only 3 positions"}))
    record = train_run(tiny_cfg, "run1084", 100000, "sparse", folder, tmp_path / "wts.h5.zip", tmp_path / "r.json",
                       tmp_path / "h.csv", tmp_path / "t.json", tmp_path / "f.npz", progress=False)
    assert record["skipped"] and (tmp_path / "wts.h5.zip").is_file()
    with pytest.raises(BundleError, match="skipped \\(only 3 positions\\)"):
        load_bundle(tmp_path / "wts.h5.zip")


def test_true_object_fits_noiseless_data_better_than_a_flat_one(tiny_simulated):
    sim_dir, _ = tiny_simulated
    data = read_dataset(sim_dir / "patched_train.npz")
    split = Split.from_arrays({**data, "groups": np.zeros((1, 1), np.int64)}, 1)
    pos = torch.from_numpy(split.positions)
    truth = physics.extract_patches(torch.from_numpy(split.truth), pos[:, 0] - 32, pos[:, 1] - 32, 64)[:, None]
    head = PhysicsHead(split.probe, split.intensity_scale)
    noiseless = head(truth)
    assert float(poisson_deviance(noiseless, noiseless)) < 1e-6
    assert float(poisson_deviance(head(torch.ones_like(truth)), noiseless)) > 0.1
    # and on the Poisson counts of the data, the truth also wins
    counts = split.amplitude[:, None] ** 2
    assert float(poisson_deviance(noiseless, counts)) < float(poisson_deviance(head(torch.ones_like(truth)), counts))


def test_common_frame_places_and_cuts_members_at_their_offsets(tiny_simulated):
    """The members' estimates land on the common frame where their patterns were measured, and
    the patches cut from one object on that frame are that object's true patches."""
    sim_dir, _ = tiny_simulated
    data = read_dataset(sim_dir / "patched_train.npz")
    obj = torch.from_numpy(data["objectGuess"]).to(torch.complex64)
    centre = torch.tensor([[60.0, 70.0], [64.0, 74.0], [66.0, 68.0], [58.0, 72.0]])  # integer mean: exact
    offsets = (centre - centre.mean(0))[None]
    truth = physics.extract_patches(obj, centre[:, 0] - 32, centre[:, 1] - 32, 64)[None]
    canvas = 96
    # the object on the frame: the frame's centre is the group's mean position
    mean = centre.mean(0)
    frame = physics.extract_patches(obj, mean[None, 0] - canvas / 2, mean[None, 1] - canvas / 2, canvas)
    y0, x0 = frame_corners(offsets, canvas, 64)
    cut = physics.extract_patches(frame, y0, x0, 64, check_bounds=False)
    assert torch.allclose(cut, truth, atol=1e-5)
    # placing each member's patch on the frame puts its pixels back where the frame has them
    placed = place_members(truth.real[:, :, None], offsets, canvas)  # (1, 4, S, S)
    for m in range(4):
        footprint = place_members(torch.ones(1, 4, 1, 64, 64), offsets, canvas)[0, m] > 0.999
        assert torch.allclose(placed[0, m][footprint], frame.real[0][footprint], atol=1e-5)


def test_a_network_sees_one_object_per_group(trained, tiny_views):
    """The overlap constraint by construction: where two members' patches overlap, they agree."""
    out, _ = trained[0]
    model = load_bundle(out / "run1084/dose_100000/dense/wts.h5.zip").model
    split = Split.from_arrays(read_dataset(tiny_views["dense"] / "test.npz", require_groups=True), 2)
    groups = split.groups[:2]
    offsets = split.offsets(groups)
    with torch.no_grad():
        patches = model(split.amplitude[torch.from_numpy(groups)], offsets)
    a, b = patches[0, 0], patches[0, 1]
    d = offsets[0, 1] - offsets[0, 0]  # b's pixel (i, j) is a's pixel (i + dy, j + dx)
    b_on_a = physics.extract_patches(b[None], -d[None, 0:1], -d[None, 1:2], 64, check_bounds=False)[0, 0]
    iy, ix = int(abs(d[0])) + 2, int(abs(d[1])) + 2
    inner = (slice(iy, 64 - iy), slice(ix, 64 - ix))
    assert torch.allclose(a[inner], b_on_a[inner], atol=5e-2)


def test_backprojection_of_the_bare_probe_is_an_empty_object():
    """With no object (O = 1) the physics input layer sees nothing: Ô − 1 ≈ 0 where the probe is bright."""
    rng = np.random.default_rng(1)
    probe = torch.polar(torch.ones(64, 64), torch.from_numpy(rng.uniform(-1, 1, (64, 64))).float())
    probe = probe * physics.central_support(64, 0.75)
    amplitude = physics.far_field(probe * 3.0).abs()[None, None]
    layer = Backprojection(probe, 3.0)
    out = layer(amplitude)
    bright = probe.abs() > 0.5
    assert out.shape == (1, 1, 3, 64, 64)
    assert float(out[0, 0, 0][bright].abs().max()) < 0.02 and float(out[0, 0, 1][bright].abs().max()) < 0.02


def test_phase_sync_recovers_patches_with_unknown_phase_offsets(tiny_simulated, tiny_cfg):
    sim_dir, _ = tiny_simulated
    data = read_dataset(sim_dir / "patched_test.npz")
    obj = torch.from_numpy(data["objectGuess"])
    y, x = data["ycoords"], data["xcoords"]
    patches = physics.extract_patches(obj, torch.from_numpy(y - 32), torch.from_numpy(x - 32), 64)
    offsets = torch.from_numpy(np.random.default_rng(3).uniform(-np.pi, np.pi, len(y))).float()
    rotated = patches * torch.polar(torch.ones_like(offsets), offsets)[:, None, None]
    support = physics.central_support(64, 0.5)
    canvas, count = stitch(rotated, y, x, tuple(obj.shape), support, sync=True)
    mask = count.numpy() > 0.5
    synced = quick_scores(canvas.numpy(), data["objectGuess"], mask, tiny_cfg)
    plain, _ = stitch(rotated, y, x, tuple(obj.shape), support, sync=False)
    unsynced = quick_scores(plain.numpy(), data["objectGuess"], mask, tiny_cfg)
    # (the unzoomed tiny object has sharp edges: bilinear sub-pixel cuts cost a little amplitude r)
    assert synced["phase_r"] > 0.99 and synced["amplitude_r"] > 0.95
    assert abs(synced["phase_spread_ratio"] - 1) < 0.05
    assert unsynced["amplitude_r"] < 0.9  # random offsets cancel where patches overlap


def test_inference_forwards_each_first_group_once_and_cuts_every_pattern_from_it(tiny_cfg, tiny_views):
    """inference.predict_and_stitch: each pattern's patch is its first group's member patch (Split.eval_groups),
    the group forwarded once however many patterns it is first for, and the canvas is those patches stitched."""
    from ptychostudy.inference import predict_and_stitch

    split = Split.read(tiny_views["dense"] / "test.npz", tiny_cfg.view("dense").gridsize)
    torch.manual_seed(0)
    model = Reconstructor(architecture(tiny_cfg, "dense", 100000), split.probe, float(split.intensity_scale), 1.0).eval()
    forwarded = []
    model.register_forward_hook(lambda module, args, out: forwarded.append(args[0].shape[0]))
    canvas, count = predict_and_stitch(model, split, tiny_cfg.infer.stitch_fraction, tiny_cfg.infer.phase_sync, batch=5)
    patterns, choice = split.eval_groups()
    assert len(np.unique(choice[:, 0])) < len(patterns)  # the check means something: some groups are first twice
    assert sum(forwarded) == len(np.unique(choice[:, 0]))
    with torch.no_grad():  # the reference: one forward per pattern, of its own first group alone
        patches = torch.stack([model(split.amplitude[torch.from_numpy(split.groups[[g]])],
                                     split.offsets(split.groups[[g]]))[0, m] for g, m in choice])
    support = physics.central_support(model.arch.size, tiny_cfg.infer.stitch_fraction)
    ref, ref_count = stitch(patches, split.positions[patterns, 0], split.positions[patterns, 1], split.truth.shape,
                            support, tiny_cfg.infer.phase_sync)
    np.testing.assert_array_equal(count, ref_count.numpy())
    np.testing.assert_allclose(canvas, ref.numpy(), rtol=0, atol=1e-5)


def test_logged_scores_ignore_a_global_phase_and_detect_a_flat_output(tiny_cfg):
    rng = np.random.default_rng(0)
    truth = (1 + 0.2 * rng.standard_normal((40, 40))) * np.exp(1j * rng.uniform(-1, 1, (40, 40)))
    mask = np.ones(truth.shape, bool)
    same = quick_scores(truth * np.exp(1j * 0.7), truth, mask, tiny_cfg)
    assert same["amplitude_r"] > 0.999 and same["phase_r"] > 0.999 and abs(same["phase_spread_ratio"] - 1) < 1e-6
    flat = quick_scores(np.ones_like(truth), truth, mask, tiny_cfg)
    # (ramp removal lends a flat output the best-fitting plane of the truth: a small spread, not 0)
    assert flat["amplitude_r"] == 0.0 and flat["phase_spread_ratio"] < 0.1


def test_a_short_training_does_not_collapse(tiny_cfg, tiny_views, tmp_path):
    """Collapse gate: 120 steps of the gridsize-1 network already give amplitude r > 0.5 on the train region."""
    import dataclasses

    cfg = tiny_cfg.replace(train=dataclasses.replace(tiny_cfg.train, filters=8, steps_per_epoch=40, batch_size=8,
                                            eval_patterns=64, epochs={**tiny_cfg.train.epochs, "baseline": 3})
    )
    record = train_run(cfg, "run1084", 100000, "baseline", tiny_views["baseline"], tmp_path / "wts.h5.zip", tmp_path / "r.json",
                       tmp_path / "h.csv", tmp_path / "t.json", tmp_path / "f.npz", progress=False)
    assert record["scores"]["train"]["amplitude_r"] > 0.5, record["scores"]


def test_orientations_turn_the_frame_and_turn_it_back():
    """train.augment: the eight orientations are the square's quarter turns, with and without a mirror,
    applied per group, and each inverse table undoes its turn exactly (complex values included)."""
    from ptychostudy.model import ORIENTATIONS, orient, orientation_tables

    forward, inverse = orientation_tables(6)
    x = torch.randn(ORIENTATIONS, 3, 6, 6, dtype=torch.complex64)
    o = torch.arange(ORIENTATIONS)
    turned = orient(x, o, forward)
    for k in range(ORIENTATIONS):
        expected = torch.rot90(torch.flip(x[k], dims=(-1,)) if k >= 4 else x[k], k % 4, dims=(-2, -1))
        assert torch.equal(turned[k], expected)
    assert len({tuple(t.tolist()) for t in forward}) == ORIENTATIONS  # eight distinct permutations
    assert torch.equal(orient(turned, o, inverse), x)


def test_orientation_zero_is_the_plain_network_and_others_turn_the_cnn_not_the_physics(tiny_simulated):
    """Orientation 0 is the network as inference runs it; another orientation turns only what the CNN sees
    and gives back: with a CNN that ignores its input, the object (hence every patch) is the CNN's output
    turned back, while the members' offsets are unchanged."""
    from ptychostudy.model import orient, orientation_tables

    sim_dir, _ = tiny_simulated
    data = read_dataset(sim_dir / "patched_train.npz")
    probe = torch.from_numpy(data["probeGuess"])
    arch = Architecture(size=64, channels=4, canvas=80, filters=4, depth=2, support=1.0, amplitude_max=2.0,
                        skips=True, inputs="backprojection", stride=1)
    torch.manual_seed(0)
    model = Reconstructor(arch, probe, 10.0, 1.0)
    amplitude = torch.from_numpy(data["diffraction"][:8]).reshape(2, 4, 64, 64)
    offsets = torch.tensor([[[-5.0, -4.0], [5.0, -4.0], [-5.0, 4.0], [5.0, 4.0]]] * 2)
    with torch.no_grad():
        assert torch.equal(model(amplitude, offsets, torch.zeros(2, dtype=torch.int64)), model(amplitude, offsets))
        class Constant(torch.nn.Module):
            def __init__(self, obj):
                super().__init__()
                self.obj = obj

            def forward(self, frame):
                return self.obj.expand(frame.shape[0], 80, 80)

        fixed = torch.polar(torch.ones(80, 80), torch.linspace(-1, 1, 80)[None, :].expand(80, 80))  # a ramp in x
        model.net = Constant(fixed)
        turned = model(amplitude, offsets, torch.tensor([1, 4]))
        _, inverse = orientation_tables(80)
        model.net = Constant(orient(fixed.expand(2, 80, 80), torch.tensor([1, 4]), inverse))
        assert torch.equal(turned, model(amplitude, offsets))
        assert not torch.equal(turned[0], turned[1])


def test_a_coarse_object_grid_has_no_detail_finer_than_its_samples():
    """train.object_stride: the decoder's map is averaged onto k×k-pixel samples, so any pattern that averages
    to zero inside every sample leaves the network's object unchanged."""
    from ptychostudy.model import PinnNet

    arch = Architecture(size=64, channels=4, canvas=80, filters=4, depth=2, support=1.0, amplitude_max=2.0,
                        skips=True, inputs="backprojection", stride=8)
    net = PinnNet(arch)
    x = torch.randn(2, 1, 80, 80)
    block = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(4, 4)  # zero mean in every 8×8 sample
    fine = block.repeat(10, 10)[None, None]
    assert torch.allclose(net._on_grid(x), net._on_grid(x + 3 * fine), atol=1e-5)
    assert not torch.allclose(net._on_grid(x), x, atol=1e-2)  # the grid does smooth
    plain = PinnNet(Architecture(**{**arch.__dict__, "stride": 1}))
    assert torch.equal(plain._on_grid(x), x)


@pytest.mark.parametrize("samples, factor", [(10, 8), (20, 4), (3, 3), (1, 2)])
def test_the_grid_upsampling_is_torchs_bilinear_interpolation(samples, factor):
    """model.bilinear_matrix (a product: deterministic on CUDA, unlike interpolate's gradient) upsamples as
    interpolate(bilinear, align_corners=False) does, edges included, and keeps a constant constant."""
    from ptychostudy.model import bilinear_matrix

    a = bilinear_matrix(samples, factor)
    assert a.shape == (samples * factor, samples) and torch.allclose(a.sum(dim=1), torch.ones(samples * factor))
    x = torch.randn(3, 1, samples, samples, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert torch.allclose(a @ x @ a.T, expected, atol=1e-6)


def test_device_batches_are_the_step_by_step_draws(tiny_cfg, tiny_views):
    """An epoch's batches made at once (``Trainer.device_batches``) hold what drawing each step's groups,
    offsets and orientations one step at a time gives — the same seeded streams in the same order — also
    when the chunk does not divide the steps."""
    from ptychostudy.model import ORIENTATIONS
    from ptychostudy.training import Trainer

    split = Split.read(tiny_views["dense"] / "train.npz", 2)
    arch = architecture(tiny_cfg, "dense", 100000)
    assert tiny_cfg.train.augment == "dihedral"
    chunked = list(Trainer(tiny_cfg, split, arch, 5).device_batches(7, 3, 3))
    reference = Trainer(tiny_cfg, split, arch, 5)
    assert len(chunked) == 7
    for batch, groups in zip(chunked, reference.step_batches(7, 3)):
        orientation = reference.orientation_rng.integers(0, ORIENTATIONS, len(groups))
        assert np.array_equal(batch.index.numpy(), groups)
        assert torch.equal(batch.offsets, split.offsets(groups))
        assert np.array_equal(batch.orientation.numpy(), orientation)
