"""Phase G metrics and alignment on cases with known answers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from ptychostudy import metrics as M

RNG = np.random.default_rng(2024)


def _structured(shape=(96, 128), seed=0):
    """A smooth, structured complex test object (amplitude 0.5…1.5, phase ±1 rad)."""
    rng = np.random.default_rng(seed)
    noise = M.gaussian_blur(rng.standard_normal(shape), 3.0)
    phase = M.gaussian_blur(rng.standard_normal(shape), 2.0)
    amp = 1.0 + 0.5 * noise / np.abs(noise).max()
    return amp * np.exp(1j * phase / np.abs(phase).max())


def _everywhere(shape):
    return np.ones(shape, dtype=bool)


def test_identical_images_score_perfectly():
    truth = _structured()
    mask = _everywhere(truth.shape)
    s = M.score(truth, truth, mask, ms_ssim_sigma=1.0, frc_apodization=2.0)
    for q in M.QUANTITIES:
        assert s[q]["mae"] == 0 and s[q]["mse"] == 0 and math.isinf(s[q]["psnr"])
        assert s[q]["ssim"] == pytest.approx(1.0, abs=1e-9)
        assert s[q]["ms_ssim"] == pytest.approx(1.0, abs=1e-9)
        assert s[q]["pearson_r"] == pytest.approx(1.0, abs=1e-12)
        # the FRC never falls below either threshold: "never crossed" (NaN), not a number such as 1 px
        assert math.isnan(s[q]["frc50_cycles_per_px"]) and math.isnan(s[q]["frc50_resolution_px"])
        assert math.isnan(s[q]["frc1_7_cycles_per_px"])
    assert s["phase"]["spread_ratio"] == pytest.approx(1.0)


def test_phase_detail_r_sees_the_fine_detail_a_blur_removes():
    """A phase with fine detail on a strong smooth background (a bowl: a blur only adds a constant to it):
    the truth blurred with σ = 8 px keeps a high phase r (the background) but loses its detail r; the truth
    itself scores detail r 1."""
    rng = np.random.default_rng(5)
    fine = M.gaussian_blur(rng.standard_normal((96, 128)), 1.5)
    rows, cols = np.mgrid[0:96, 0:128]
    phase = 0.5 * fine / np.abs(fine).max() + 1.2 * (((rows - 48) / 48) ** 2 + ((cols - 64) / 64) ** 2 - 1)
    truth = np.exp(1j * phase)
    mask = _everywhere(truth.shape)
    same = M.score(truth, truth, mask, 0.0, 0.1, detail_sigma=8.0)["phase"]
    assert same["detail_r"] == pytest.approx(1.0, abs=1e-12)
    blurred = M.score(np.exp(1j * M.gaussian_blur(phase, 8.0)), truth, mask, 0.0, 0.1, detail_sigma=8.0)["phase"]
    assert blurred["pearson_r"] > 0.8 and blurred["detail_r"] < 0.3, blurred
    assert "detail_r" not in M.score(truth, truth, mask, None, None, full=False, detail_sigma=8.0)["phase"]


def test_psnr_and_errors_of_a_known_offset():
    truth = np.abs(_structured())
    error = 0.01
    data_range = truth.max() - truth.min()
    mask = _everywhere(truth.shape)
    s = M.score((truth + error) * np.exp(0j), truth.astype(complex), mask, 0.0, 0.1)["amplitude"]
    assert s["mae"] == pytest.approx(error)
    assert s["mse"] == pytest.approx(error**2)
    assert s["psnr"] == pytest.approx(20 * math.log10(data_range / error))


class _Settings:  # the compare section's scoring keys
    max_shift_px = 4.0
    ms_ssim_sigma = 1.0
    frc_apodization_px = 2.0
    detail_sigma_px = 8.0
    frc_smooth_rings = 5


SETTINGS = _Settings()


def test_registration_recovers_a_known_subpixel_shift():
    truth = _structured((128, 128))
    moved = M.fourier_shift(truth, 1.3, -0.7)  # content moved down 1.3 px and left 0.7 px
    mask = np.zeros(truth.shape, dtype=bool)
    mask[16:112, 16:112] = True
    dy, dx = M.register(np.abs(moved), np.abs(truth), mask, max_shift=4)
    assert dy == pytest.approx(-1.3, abs=0.1) and dx == pytest.approx(0.7, abs=0.1)
    result = M.score_arm(moved, truth, {"scanned": mask, "featured": mask}, SETTINGS)
    assert result.shift == (dy, dx)  # registered once, in the scanned region
    s = result.scores["featured"]
    assert s["amplitude"]["pearson_r"] > 0.999 and s["phase"]["pearson_r"] > 0.999
    unaligned = M.score(moved, truth, mask, 1.0, 0.1)
    assert unaligned["amplitude"]["pearson_r"] < s["amplitude"]["pearson_r"] - 0.02


def test_phase_offset_ramp_and_amplitude_scale_are_removed():
    truth = _structured()
    yy, xx = np.indices(truth.shape)
    recon = 2.0 * truth * np.exp(1j * (0.8 + 0.01 * yy - 0.02 * xx))
    mask = _everywhere(truth.shape)
    assert np.allclose(M.align(recon, truth, mask), truth, atol=1e-9)
    result = M.score_arm(recon, truth, {"scanned": mask, "featured": mask}, SETTINGS)
    assert np.allclose(result.aligned["featured"], truth, atol=1e-6) and max(map(abs, result.shift)) < 0.05


def test_the_featured_mask_honours_its_inclusive_bounds():
    mask = M.featured_mask((10, 12), (2, 5, 3, 8))  # rows 2..5, columns 3..8, both ends included
    assert mask.sum() == 4 * 6 and mask[2, 3] and mask[5, 8] and not mask[6, 8] and not mask[5, 9]
    assert M.bounding_box(mask) == (slice(2, 6), slice(3, 9))


def test_regions_light_where_the_probe_lit_and_keep_the_featured_part():
    probe = np.zeros((8, 8), np.complex64)
    probe[3:5, 3:5] = 1
    positions = np.array([[20.0, 20.0], [20.0, 30.0]])  # (y, x) centres
    masks = M.regions(SimpleNamespace(probe=probe, positions=positions, truth=np.ones((48, 48)), featured=(0, 47, 26, 47)),
                      threshold=0.5)
    lit = np.argwhere(masks["scanned"])
    assert set(map(tuple, lit)) == {(y, x) for y in (19, 20) for x in (19, 20, 29, 30)}
    assert set(map(tuple, np.argwhere(masks["featured"]))) == {(y, x) for y in (19, 20) for x in (29, 30)}


def test_pixel_metrics_only_skip_the_window_and_fourier_metrics():
    truth = _structured()
    mask = _everywhere(truth.shape)
    quick = M.score(truth * 1.01, truth, mask, None, None, full=False)
    full = M.score(truth * 1.01, truth, mask, 1.0, 0.1)
    assert set(quick["phase"]) == {"mae", "mse", "psnr", "pearson_r", "spread_ratio"}
    for quantity in M.QUANTITIES:
        for metric, value in quick[quantity].items():
            assert full[quantity][metric] == value


def test_pure_noise_scores_near_zero():
    shape = (128, 128)
    a = RNG.standard_normal(shape) + 2.0
    b = RNG.standard_normal(shape) + 2.0
    mask = _everywhere(shape)
    assert abs(M.pearson(a.ravel(), b.ravel())) < 0.05
    assert abs(M.ssim(a, b, mask, data_range=b.max() - b.min())) < 0.05
    freqs, curve = M.frc_curve(a, b, mask, apodization=2.0)
    assert M.frc_crossing(freqs, curve, 0.5) < 2.0 / 128  # below threshold from the first ring
    assert np.abs(curve[10:]).mean() < 0.1


def test_blurred_copy_degrades_ssim_and_psnr_monotonically():
    truth = np.abs(_structured((96, 96), seed=3))
    mask = _everywhere(truth.shape)
    data_range = truth.max() - truth.min()
    previous_ssim, previous_psnr = 1.0, math.inf
    for sigma in (0.7, 1.5, 3.0):
        blurred = M.gaussian_blur(truth, sigma)
        s = M.score(blurred.astype(complex), truth.astype(complex), mask, 0.0, 0.1)["amplitude"]
        assert s["ssim"] < previous_ssim and s["psnr"] < previous_psnr
        assert s["ms_ssim"] < 1.0
        previous_ssim, previous_psnr = s["ssim"], s["psnr"]
        assert M.ssim(blurred, truth, mask, data_range) == pytest.approx(s["ssim"])


def test_frc_of_a_blurred_noisy_copy_crosses_where_theory_says():
    # white signal S = 1, Gaussian blur G(f) = exp(-2π²σ²f²), white noise N = σn²:
    # FRC(f) = G / sqrt(G² + N), so FRC = 0.5 where G = σn / √3
    shape = (256, 256)
    signal = RNG.standard_normal(shape)
    sigma_b, sigma_n = 1.5, 0.3
    copy = M.gaussian_blur(signal, sigma_b) + sigma_n * RNG.standard_normal(shape)
    freqs, curve = M.frc_curve(copy, signal, _everywhere(shape), apodization=2.0)
    for threshold in (0.5, 1 / 7):
        g = sigma_n * threshold / math.sqrt(1 - threshold**2)
        expected = math.sqrt(math.log(1 / g) / (2 * math.pi**2 * sigma_b**2))
        assert M.frc_crossing(freqs, curve, threshold, smooth=5) == pytest.approx(expected, abs=0.015)


def test_a_plane_has_no_resolution_against_the_real_object_inside_an_irregular_region():
    """The FRC apodized inside the region (metrics.frc_window): a blank object's aligned phase (a plane) shares no ring
    with the real object's phase, however irregular the region's outline. The former rule (the region's box filled
    with its mean, a Tukey taper of 0.1 of each side) put the outline and the taper's edges in both images: here its
    curve reached 0.25 at high frequencies (in the study, with the scans' own outlines, above 0.5 up to Nyquist: 41 of
    78 values "never crossed", a blank object's among them)."""
    from conftest import OBJECT
    from ptychostudy.npz import read_npz
    from ptychostudy.resample import fourier_zoom

    truth = fourier_zoom(read_npz(OBJECT, "object")["objectGuess"].astype(complex), 2)
    y, x = np.mgrid[: truth.shape[0], : truth.shape[1]]
    mask = (y >= 278) & (y < 378) & (x >= 74) & (x < 380)  # the test split's featured box of the study
    mask &= y >= 278 + 12 * (1 + np.sin(x / 9.0)) / 2  # a wavy scanned edge along the top, as a scan's outline
    blank = M.align(np.ones_like(truth), truth, mask)
    freqs, curve = M.frc_curve(np.angle(blank), np.angle(truth), mask, apodization=2.0)
    assert np.abs(M.smooth_rings(curve, 5)[5:]).max() < 0.1
    assert 1 / (2 * M.frc_crossing(freqs, curve, 0.5, 5)) > 20  # no resolution worth the name
    # a noisy copy of the truth still reads a resolution (a crossing, not "never crossed")
    copy = np.angle(truth) + 0.05 * RNG.standard_normal(truth.shape)
    freqs, curve = M.frc_curve(copy, np.angle(truth), mask, apodization=2.0)
    assert np.isfinite(M.frc_crossing(freqs, curve, 0.5, 5))
    window = M.frc_window(mask, 2.0)
    assert window[~mask].max() < 0.05 and window[mask].max() == pytest.approx(1.0, abs=1e-6)


def test_frc_crossing_interpolates_linearly():
    freqs = np.array([0.1, 0.2, 0.3])
    assert M.frc_crossing(freqs, np.array([0.9, 0.7, 0.3]), 0.5) == pytest.approx(0.25)
    assert math.isnan(M.frc_crossing(freqs, np.array([0.9, 0.8, 0.6]), 0.5))  # never crosses: no resolution
    assert M.frc_crossing(freqs, np.array([0.2, 0.1, 0.0]), 0.5) == pytest.approx(0.0625)  # from FRC(0) = 1


def test_frc_reads_the_last_crossing_of_the_smoothed_curve():
    """A curve that dips below ½ at one ring and recovers (what made the first crossing jump between seeds)
    is read at its last fall, and smoothing over rings removes the one-ring dip; a curve still above ½ at
    Nyquist never crossed."""
    freqs = np.arange(1, 21) / 40.0
    curve = np.linspace(0.95, 0.2, 20)
    curve[3] = 0.45  # one noisy ring
    raw_first = 0.1  # where the first-crossing rule would stop
    last = M.frc_crossing(freqs, curve, 0.5)
    assert last > 2 * raw_first and last == pytest.approx(M.frc_crossing(freqs, np.linspace(0.95, 0.2, 20), 0.5))
    smoothed = M.frc_crossing(freqs, curve, 0.5, smooth=5)
    assert abs(smoothed - last) < 0.03
    rising = curve.copy()
    rising[-3:] = 0.8
    assert math.isnan(M.frc_crossing(freqs, rising, 0.5))
    assert np.allclose(M.smooth_rings(np.ones(7), 5), 1.0) and M.smooth_rings(np.arange(5.0), 1).tolist() == [0, 1, 2, 3, 4]


def test_a_blank_objects_phase_detail_is_zero_on_a_thin_region():
    """The floor: a blank object aligned to the truth is a phase plane; its detail r is 0 (a ramp has no
    detail), also where the region is thin and the blur reaches its edge (the sparse view's test region)."""
    shape = (60, 120)
    truth = _structured(shape)
    mask = np.zeros(shape, dtype=bool)
    mask[10:45, 5:115] = True
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    plane = np.exp(1j * (0.3 + 0.02 * yy - 0.015 * xx))
    assert M.score(plane, truth, mask, 0.0, 0.1, detail_sigma=6.0)["phase"]["detail_r"] == 0.0


def test_a_constant_reconstruction_is_flagged_as_collapsed():
    truth = _structured()
    mask = _everywhere(truth.shape)
    flat = np.full(truth.shape, np.abs(truth).mean(), dtype=complex)
    s = M.score(flat, truth, mask, 1.0, 0.1)
    assert s["amplitude"]["pearson_r"] == 0.0 and s["phase"]["pearson_r"] == 0.0
    assert s["phase"]["spread_ratio"] == 0.0
    assert s["amplitude"]["ssim"] < 0.2
    # a constant phase still scores a high phase SSIM on a weak-phase object: why r and spread are reported too
    weak = np.abs(truth) * np.exp(0.05j * np.angle(truth))
    assert M.score(np.abs(truth).astype(complex), weak, mask, 1.0, 0.1)["phase"]["ssim"] > 0.6


def test_ms_ssim_uses_the_levels_that_fit_with_renormalised_weights():
    a = RNG.random((20, 20))
    b = a + 0.2 * RNG.random((20, 20))
    mask = _everywhere(a.shape)
    data_range = max(np.ptp(a), np.ptp(b))
    level1 = max(M.ssim_map(a, b, data_range).mean(), 1e-4)
    level2 = max(M.ssim_map(a[::2, ::2], b[::2, ::2], data_range).mean(), 1e-4)  # 10 px; 5 px no longer fits
    w1, w2 = M.MS_SSIM_WEIGHTS[:2]
    expected = level1 ** (w1 / (w1 + w2)) * level2 ** (w2 / (w1 + w2))
    assert M.ms_ssim(a, b, mask, data_range) == pytest.approx(expected)


def test_scores_are_restricted_to_the_region():
    truth = _structured()
    recon = truth.copy()
    recon[:, :40] = 0.3  # garbage outside the scored columns
    mask = np.zeros(truth.shape, dtype=bool)
    mask[:, 48:] = True
    s = M.score(recon, truth, mask, 1.0, 0.1)
    assert s["amplitude"]["ssim"] == pytest.approx(1.0) and s["phase"]["pearson_r"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="empty"):
        M.score(recon, truth, np.zeros_like(mask), 1.0, 0.1)


def test_ssim_and_registration_agree_with_scikit_image():
    """The hand-written SSIM (7×7 uniform window, sample covariance) equals scikit-image's structural_similarity
    with the same window on a whole image, and the registration finds the shift scikit-image's
    phase_cross_correlation finds (both sub-pixel, 1/50 px), with the opposite sign (skimage: the shift of the
    moving image; ours: the correction to apply)."""
    from skimage.metrics import structural_similarity
    from skimage.registration import phase_cross_correlation

    truth = np.abs(_structured((96, 96), seed=4))
    other = M.gaussian_blur(truth, 1.2) + 0.05 * RNG.standard_normal(truth.shape)
    data_range = float(truth.max() - truth.min())
    theirs = structural_similarity(other, truth, win_size=7, data_range=data_range, gaussian_weights=False,
                                   use_sample_covariance=True)
    assert M.ssim(other, truth, _everywhere(truth.shape), data_range) == pytest.approx(theirs, abs=1e-10)
    image = np.abs(_structured((128, 128), seed=6))
    for shift in ((1.3, -0.7), (-2.26, 0.5), (0.0, 3.1)):
        moved = M.fourier_shift(image, *shift)
        ours = M.register(moved, image, _everywhere(image.shape), max_shift=4)
        found, _, _ = phase_cross_correlation(image, moved, upsample_factor=50)
        assert np.allclose(ours, -np.asarray(shift), atol=0.06), (ours, shift)
        assert np.allclose(ours, found, atol=0.06), (ours, found)
