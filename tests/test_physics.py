"""The one forward model: Parseval, sub-pixel shifts, adjoint, probe measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychostudy import physics


def _smooth_image(size=48, seed=0):
    """A band-limited complex image (low-pass filtered noise) with no symmetry."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fft2(rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size)))
    f = np.fft.fftfreq(size)
    spectrum *= np.exp(-((f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.025**2)))
    return torch.from_numpy(np.fft.ifft2(spectrum))


def test_far_field_is_orthonormal_parseval():
    wave = _smooth_image() + 0.3
    field = physics.far_field(wave)
    assert torch.allclose((field.abs() ** 2).sum(), (wave.abs() ** 2).sum(), rtol=1e-12)


def test_far_field_puts_zero_frequency_at_the_centre():
    wave = torch.ones(16, 16, dtype=torch.complex128)
    intensity = physics.far_field(wave).abs() ** 2
    assert intensity[8, 8] == pytest.approx(256.0)
    assert intensity.sum() == pytest.approx(256.0)


def test_one_pixel_shift_moves_a_delta_down_and_right():
    image = torch.zeros(9, 9, dtype=torch.float64)
    image[3, 5] = 1.0
    down = physics.shift_image(image, 1.0, 0.0)
    right = physics.shift_image(image, 0.0, 1.0)
    assert down[4, 5] == 1.0 and down.sum() == 1.0
    assert right[3, 6] == 1.0 and right.sum() == 1.0


def test_half_pixel_shift_splits_a_delta_evenly():
    image = torch.zeros(9, 9, dtype=torch.float64)
    image[4, 4] = 1.0
    shifted = physics.shift_image(image, 0.5, -0.5)
    assert shifted[4, 4] == pytest.approx(0.25) and shifted[5, 3] == pytest.approx(0.25)
    assert shifted[4, 3] == pytest.approx(0.25) and shifted[5, 4] == pytest.approx(0.25)


@pytest.mark.parametrize("dy,dx", [(2.0, -3.0), (0.3, 0.7), (-1.25, 0.6)])
def test_shift_round_trip(dy, dx):
    image = _smooth_image()
    back = physics.shift_image(physics.shift_image(image, dy, dx), -dy, -dx)
    inner = (slice(6, -6), slice(6, -6))
    error = (back - image)[inner].abs().max() / image.abs().max()
    if float(dy).is_integer() and float(dx).is_integer():
        assert error == 0.0
    else:
        # bilinear resampling low-passes: small but not zero on a smooth image
        assert error < 0.01


def test_bilinear_is_exact_on_a_linear_ramp():
    rows, cols = torch.meshgrid(torch.arange(20.0, dtype=torch.float64), torch.arange(20.0, dtype=torch.float64), indexing="ij")
    ramp = 2.0 * rows - 0.5 * cols
    patch = physics.extract_patches(ramp, torch.tensor([3.3]), torch.tensor([5.8]), 8)[0]
    expected = 2.0 * (rows[:8, :8] + 3.3) - 0.5 * (cols[:8, :8] + 5.8)
    assert torch.allclose(patch, expected, atol=1e-12)


def test_patch_is_centred_on_its_position():
    obj = torch.zeros(40, 40, dtype=torch.complex128)
    obj[20, 17] = 1.0
    patch = physics.extract_patches(obj, physics.top_left(torch.tensor([20.0]), 8), physics.top_left(torch.tensor([17.0]), 8), 8)[0]
    assert patch[4, 4] == 1.0  # the centre pixel N/2 of the patch


def test_extract_refuses_to_read_outside_the_object():
    obj = torch.ones(32, 32, dtype=torch.complex128)
    with pytest.raises(Exception, match="outside"):
        physics.extract_patches(obj, torch.tensor([24.5]), torch.tensor([0.0]), 8)


def test_place_is_the_adjoint_of_extract():
    rng = np.random.default_rng(1)
    obj = torch.from_numpy(rng.normal(size=(30, 30)) + 1j * rng.normal(size=(30, 30)))
    y0 = torch.from_numpy(rng.uniform(0, 21, size=5))
    x0 = torch.from_numpy(rng.uniform(0, 21, size=5))
    patches = torch.from_numpy(rng.normal(size=(5, 8, 8)) + 1j * rng.normal(size=(5, 8, 8)))
    lhs = torch.vdot(physics.extract_patches(obj, y0, x0, 8).flatten(), patches.flatten())
    rhs = torch.vdot(obj.flatten(), physics.place_patches(patches, y0, x0, (30, 30)).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-12)


def test_disc_overlap_known_values():
    assert physics.disc_overlap(0.0, 10.0) == pytest.approx(1.0)
    assert physics.disc_overlap(5.0, 10.0) == pytest.approx(0.391, abs=1e-3)  # d = R
    assert physics.disc_overlap(10.0, 10.0) == 0.0
    assert physics.disc_overlap(25.0, 10.0) == 0.0


def test_probe_diameter_of_a_flat_disc():
    rows, cols = np.indices((64, 64))
    disc = (np.hypot(rows - 32, cols - 32) <= 10).astype(np.complex128)
    assert physics.probe_diameter(disc, 0.999) == pytest.approx(20.0, abs=1.0)
    # half the power of a flat disc of radius 10 lies inside radius 10/sqrt(2)
    assert physics.probe_diameter(disc, 0.5) == pytest.approx(2 * 10 / np.sqrt(2), abs=1.0)


def test_dose_scale_gives_the_dose_in_expectation():
    patches = (_smooth_image(16) + 1.0)[None].repeat(3, 1, 1)
    probe = torch.ones(16, 16, dtype=torch.complex128) / 16
    s = physics.dose_scale(physics.exit_wave_power(probe, patches).mean(), 5000.0)
    assert physics.expected_intensity(probe, patches, s).sum(dim=(-2, -1)).mean() == pytest.approx(5000.0)


def _asymmetric_object(size=40, seed=5):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(0.5, 1.5, (size, size)) * np.exp(1j * rng.uniform(-2, 2, (size, size))))


def test_batched_place_matches_one_image_at_a_time():
    rng = np.random.default_rng(2)
    patches = torch.from_numpy(rng.normal(size=(3, 4, 8, 8)))
    y0 = torch.from_numpy(rng.uniform(-2, 20, size=(3, 4)))
    x0 = torch.from_numpy(rng.uniform(-2, 20, size=(3, 4)))
    batched = physics.place_patches(patches, y0, x0, (24, 24))
    for b in range(3):
        assert torch.allclose(batched[b], physics.place_patches(patches[b], y0[b], x0[b], (24, 24)))


def test_place_without_host_checks_gives_the_same_image():
    """The GPU's way (no value read back to the host; outside samples added as zeros) and the CPU's way
    (a host-side test, outside samples dropped) give the same image, with patches partly outside and inside."""
    rng = np.random.default_rng(3)
    patches = torch.from_numpy(rng.normal(size=(3, 4, 8, 8)) + 1j * rng.normal(size=(3, 4, 8, 8)))
    for low, high in ((-5.0, 20.0), (1.0, 14.0)):  # some patches reach outside; all inside
        y0 = torch.from_numpy(rng.uniform(low, high, size=(3, 4)))
        x0 = torch.from_numpy(rng.uniform(low, high, size=(3, 4)))
        host = physics.place_patches(patches, y0, x0, (24, 24), host_checks=True)
        free = physics.place_patches(patches, y0, x0, (24, 24), host_checks=False)
        assert float(host.abs().max()) > 1 and torch.equal(host, free)


def test_place_at_whole_pixels_skips_the_zero_taps_and_gives_the_same_image_bit_for_bit():
    """At whole-pixel positions (a gridsize-1 network's frame) three of the four bilinear taps weigh 0 everywhere;
    the CPU skips them. The image is the one the four-tap way gives (the GPU's, which never skips), bit for bit, and
    each patch lies where a plain slice puts it; a fractional position keeps all four taps."""
    rng = np.random.default_rng(4)
    patches = torch.from_numpy((rng.normal(size=(2, 3, 8, 8)) + 1j * rng.normal(size=(2, 3, 8, 8))).astype(np.complex64))
    patches[0, 0, 0, :3] = -0.0  # signed zeros too
    y0 = torch.tensor([[0.0, 5.0, 12.0], [3.0, 3.0, 16.0]])
    x0 = torch.tensor([[0.0, 9.0, 2.0], [16.0, 7.0, 16.0]])
    skipped = physics.place_patches(patches, y0, x0, (24, 24), host_checks=True)
    four = physics.place_patches(patches, y0, x0, (24, 24), host_checks=False)
    assert torch.equal(torch.view_as_real(skipped), torch.view_as_real(four))
    assert torch.equal(torch.signbit(torch.view_as_real(skipped)), torch.signbit(torch.view_as_real(four)))
    reference = torch.zeros((2, 24, 24), dtype=torch.complex64)
    for b in range(2):
        for k in range(3):
            y, x = int(y0[b, k]), int(x0[b, k])
            reference[b, y:y + 8, x:x + 8] += patches[b, k]
    assert torch.allclose(skipped, reference, atol=1e-6)
    shifted = physics.place_patches(patches, y0 + 0.5, x0, (25, 25), host_checks=True)
    assert torch.allclose(shifted, physics.place_patches(patches, y0 + 0.5, x0, (25, 25), host_checks=False))
    assert not torch.allclose(shifted[:, :24, :24], reference)


def test_stitching_true_patches_reproduces_the_object_where_covered():
    obj = _asymmetric_object()
    n = 16
    y0 = torch.tensor([0.0, 4.0, 9.0, 23.0, 13.0])
    x0 = torch.tensor([0.0, 11.0, 2.0, 20.0, 23.0])
    patches = physics.extract_patches(obj, y0, x0, n)
    canvas, count = physics.merge_patches(patches, y0, x0, physics.central_support(n, dtype=torch.float64), obj.shape)
    covered = count > 0.5
    assert covered.sum() > 4 * 8 * 8 * 0.8
    assert torch.allclose(canvas[covered], obj[covered], atol=1e-12)
    assert torch.all(canvas[count == 0] == 0)


def test_merge_then_extract_returns_the_true_patches_of_a_group():
    """The gridsize-2 overlap constraint on exact patches is the identity inside the supports."""
    obj = _asymmetric_object(64)
    n, m = 16, 32
    centre = torch.tensor([[30.0, 30.0]])
    rel = torch.tensor([[[-3.0, -2.0], [-3.0, 4.0], [2.0, -1.0], [3.0, 5.0]]])  # (B=1, C=4, (dy, dx)) integer
    absolute = centre[:, None, :] + rel
    patches = physics.extract_patches(obj, physics.top_left(absolute[0, :, 0], n), physics.top_left(absolute[0, :, 1], n), n)[None]
    # on the group's own M×M canvas, member c sits at the canvas centre plus its relative offset
    cy = physics.top_left(m / 2 + rel[..., 0], n)
    cx = physics.top_left(m / 2 + rel[..., 1], n)
    support = physics.central_support(n, dtype=torch.float64)
    canvas, count = physics.merge_patches(patches, cy, cx, support, (m, m))
    again = physics.extract_patches(canvas, cy, cx, n, check_bounds=False)
    seen = physics.extract_patches(count, cy, cx, n, check_bounds=False) > 0.5
    assert torch.allclose(again[seen], patches[seen], atol=1e-12)
    assert seen[0, 0].sum() >= (n // 2) ** 2  # at least each member's own support
    # a sign error in the offsets would put the wrong pixels there
    wrong = physics.extract_patches(canvas, physics.top_left(m / 2 - rel[..., 0], n), physics.top_left(m / 2 - rel[..., 1], n), n, check_bounds=False)
    assert not torch.allclose(wrong[seen], patches[seen], atol=1e-3)
