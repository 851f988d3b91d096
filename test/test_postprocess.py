import cv2
import numpy as np
import pytest

from grasp_fcn_ros.core.geometry import CropTransform
from grasp_fcn_ros.core.postprocess import (
    detect_grasps,
    find_peaks,
    GraspMaps,
    maps_from_output,
    PostprocessConfig,
    smooth,
    smooth_at,
)


def _quality_with_peaks(peaks, size=100):
    q = np.zeros((size, size), np.float32)
    for (r, c), value in peaks.items():
        q[r, c] = value
    return q


def test_peaks_best_first_with_threshold():
    q = _quality_with_peaks({(10, 10): 0.5, (50, 60): 0.9, (80, 20): 0.7, (30, 80): 0.1})
    peaks = find_peaks(q, threshold=0.2, min_distance_px=5, max_peaks=10)
    np.testing.assert_array_equal(peaks, [[50, 60], [80, 20], [10, 10]])


def test_peaks_respect_max_count():
    q = _quality_with_peaks({(10, 10): 0.5, (50, 60): 0.9, (80, 20): 0.7})
    np.testing.assert_array_equal(find_peaks(q, 0.0, 5, 2), [[50, 60], [80, 20]])
    assert find_peaks(q, 0.0, 5, 0).shape == (0, 2)


def test_peaks_closer_than_min_distance_keep_the_better():
    q = _quality_with_peaks({(50, 50): 0.9, (50, 56): 0.8, (50, 70): 0.7})
    np.testing.assert_array_equal(find_peaks(q, 0.1, 10, 10), [[50, 50], [50, 70]])
    np.testing.assert_array_equal(find_peaks(q, 0.1, 3, 10), [[50, 50], [50, 56], [50, 70]])


def test_plateau_gives_one_peak():
    q = np.zeros((60, 60), np.float32)
    q[20:27, 20:27] = 0.8
    peaks = find_peaks(q, 0.5, 10, 5)
    assert len(peaks) == 1
    assert 20 <= peaks[0][0] < 27 and 20 <= peaks[0][1] < 27


def test_nothing_above_threshold_and_nan():
    q = np.full((20, 20), 0.1, np.float32)
    q[5, 5] = np.nan
    assert find_peaks(q, 0.5, 3, 5).shape == (0, 2)


def _peaks_over_the_whole_map(quality, threshold, d, max_peaks):
    """find_peaks written as a comparison of whole maps (the definition)."""
    quality = np.nan_to_num(np.asarray(quality, dtype=np.float32), nan=-np.inf)
    dilated = cv2.dilate(quality, np.ones((2 * d + 1, 2 * d + 1), np.uint8),
                         borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
    candidates = np.argwhere((quality >= dilated) & (quality >= threshold)
                             & np.isfinite(quality))
    candidates = candidates[np.argsort(-quality[tuple(candidates.T)], kind='stable')]
    kept = []
    while len(candidates) and len(kept) < max_peaks:
        kept.append(candidates[0])
        candidates = candidates[((candidates - candidates[0]) ** 2).sum(axis=1) > d * d]
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


@pytest.mark.parametrize('seed', range(6))
def test_peaks_read_above_the_threshold_only_equal_the_whole_map_definition(seed):
    rng = np.random.default_rng(seed)
    q = smooth(rng.random((120, 90)).astype(np.float32) ** 4, 2.0)
    q[rng.random(q.shape) < 0.01] = 0.9  # ties and plateaus
    if seed % 2:  # NaN and infinities (a broken network output) take the careful path
        q[rng.random(q.shape) < 0.02] = np.nan
        q[3, 4], q[60, 50] = np.inf, -np.inf
    for threshold, d in ((0.05, 3), (0.2, 10), (0.0, 1)):
        np.testing.assert_array_equal(find_peaks(q, threshold, d, 25),
                                      _peaks_over_the_whole_map(q, threshold, d, 25))


@pytest.mark.parametrize('d', (1, 4, 10))
def test_a_flat_map_at_the_threshold_gives_peaks_a_distance_apart(d):
    # a map that is 0 wherever the network sees nothing, with q_threshold 0: every pixel is a
    # local maximum; the peaks are the greedy pick in reading order, each more than d from
    # the ones before
    q = np.zeros((400, 400), np.float32)
    q[300:, 300:] = -1.0  # not a peak: below the threshold
    for max_peaks in (1, 20, 300):
        peaks = find_peaks(q, 0.0, d, max_peaks)
        np.testing.assert_array_equal(peaks, _peaks_over_the_whole_map(q, 0.0, d, max_peaks))
        assert len(peaks) == max_peaks and peaks[0].tolist() == [0, 0]
        if max_peaks > 1:
            assert peaks[1].tolist() == [0, d + 1]


def test_maps_from_output_angle_and_width():
    out = np.zeros((4, 40, 40), np.float32)
    phi = np.deg2rad(30.0)
    out[0, 20, 20] = 1.0
    out[1] = np.cos(2 * phi)
    out[2] = np.sin(2 * phi)
    out[3] = 0.4
    config = PostprocessConfig(q_sigma_px=0, angle_sigma_px=0, width_sigma_px=0,
                               width_given_quality=False)
    maps = maps_from_output(out, max_width_px=150.0, config=config)
    np.testing.assert_allclose(maps.angle, phi, atol=1e-6)
    np.testing.assert_allclose(maps.width_px, 60.0, rtol=1e-6)
    assert maps.quality[20, 20] == 1.0


def test_width_given_quality_recovers_the_width_of_an_uncertain_grasp():
    # an MSE-trained network unsure of a grasp of width 0.4 (60 px) outputs Q = p, width = p*0.4
    out = np.zeros((4, 40, 40), np.float32)
    out[0, 10:30, 10:30] = 0.25
    out[3, 10:30, 10:30] = 0.25 * 0.4
    out[0, 2, 2] = 0.01
    out[3, 2, 2] = 0.3  # below the floor: divided by 0.05, clipped to the 1.0 maximum
    config = PostprocessConfig(q_sigma_px=0, angle_sigma_px=0, width_sigma_px=0,
                               width_given_quality=True)
    maps = maps_from_output(out, max_width_px=150.0, config=config)
    np.testing.assert_allclose(maps.width_px[10:30, 10:30], 60.0, rtol=1e-5)
    assert maps.width_px[2, 2] == pytest.approx(150.0)
    assert maps.width_px[35, 35] == 0.0
    raw = maps_from_output(out, 150.0, PostprocessConfig(
        q_sigma_px=0, angle_sigma_px=0, width_sigma_px=0))  # the default: the raw width map
    np.testing.assert_allclose(raw.width_px[10:30, 10:30], 15.0, rtol=1e-5)


def test_maps_clip_quality_and_negative_width():
    out = np.zeros((4, 10, 10), np.float32)
    out[0] = 1.7
    out[3] = -0.5
    maps = maps_from_output(out, 150.0, PostprocessConfig())
    assert maps.quality.max() <= 1.0 and maps.width_px.min() >= 0.0


def test_smoothing_moves_nothing_for_a_symmetric_blob():
    out = np.zeros((4, 64, 64), np.float32)
    out[0, 30:33, 40:43] = 1.0
    maps = maps_from_output(out, 150.0, PostprocessConfig(q_sigma_px=2.0))
    np.testing.assert_array_equal(find_peaks(maps.quality, 0.1, 5, 5), [[31, 41]])


def test_detect_grasps_maps_to_source_pixels():
    size = 400
    q = np.zeros((size, size), np.float32)
    q[100, 300] = 0.9
    maps = GraspMaps(q, np.full_like(q, 0.25), np.full_like(q, 40.0))
    transform = CropTransform(x0=80, y0=0, size=480, out_size=400)
    config = PostprocessConfig(q_threshold=0.5, q_sigma_px=0)
    (g,) = detect_grasps(maps, config, transform)
    np.testing.assert_allclose([g.u, g.v], transform.to_source([300, 100]))
    assert g.angle == pytest.approx(0.25)
    assert g.width_px == pytest.approx(40.0 * 1.2)
    assert g.quality == pytest.approx(0.9)


@pytest.mark.parametrize('sigma', [0.0, 0.7, 1.0, 2.0, 3.5])
def test_smooth_at_equals_the_whole_blur_at_those_pixels(sigma):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(60, 45)).astype(np.float32)
    rows = np.array([0, 0, 59, 59, 30, 1, 58, 7])
    cols = np.array([0, 44, 0, 44, 20, 43, 2, 30])
    expected = smooth(image, sigma)[rows, cols]
    np.testing.assert_allclose(smooth_at(image, sigma, rows, cols), expected, atol=1e-5)


@pytest.mark.parametrize('sigma', [0.0, 1.0, 2.0])
def test_smooth_at_applies_a_pointwise_function_before_the_blur(sigma):
    rng = np.random.default_rng(2)
    image = rng.normal(size=(40, 50)).astype(np.float32)
    rows, cols = np.array([0, 39, 20, 3]), np.array([0, 49, 25, 47])

    def clipped(values):
        return np.clip(values, 0.0, 1.0)

    np.testing.assert_array_equal(smooth_at(image, sigma, rows, cols, clipped),
                                  smooth_at(clipped(image), sigma, rows, cols))


def test_network_maps_read_at_peaks_equal_the_whole_maps():
    rng = np.random.default_rng(1)
    output = rng.uniform(-0.2, 1.2, size=(4, 80, 80)).astype(np.float32)
    config = PostprocessConfig()
    maps = maps_from_output(output, 150.0, config)
    rows, cols = rng.integers(0, 80, 20), rng.integers(0, 80, 20)
    angle, width = maps.values_at(rows, cols)
    assert maps.usable() is None  # finite output: no whole-map check needed
    np.testing.assert_allclose(angle, maps.angle[rows, cols], atol=1e-5)
    np.testing.assert_allclose(width, maps.width_px[rows, cols], rtol=1e-5, atol=1e-3)
    # once the whole maps exist they are read directly
    np.testing.assert_array_equal(maps.values_at(rows, cols)[0], maps.angle[rows, cols])


def test_a_saturated_area_peaks_at_its_centre():
    # a network sure of an area outputs Q above 1 there: the peak is where it is surest, not
    # anywhere on the plateau that capping at 1 would leave
    rows, cols = np.mgrid[0:100, 0:100]
    q = 1.4 - 0.002 * ((rows - 50) ** 2 + (cols - 62) ** 2)
    output = np.zeros((4, 100, 100), np.float32)
    output[0] = q
    output[1] = 1.0
    maps = maps_from_output(output, 150.0, PostprocessConfig())
    assert maps.quality.max() == pytest.approx(1.0)
    (grasp,) = detect_grasps(maps, PostprocessConfig(max_grasps=1))
    assert (grasp.v, grasp.u) == (50, 62)
    assert grasp.quality == pytest.approx(1.0)


def test_non_finite_output_is_no_grasp():
    output = np.zeros((4, 40, 40), np.float32)
    output[0, 10, 10] = 0.9
    output[0, 30, 30] = 0.8
    output[1, 8:13, 8:13] = np.nan
    maps = maps_from_output(output, 150.0, PostprocessConfig(q_sigma_px=0))
    assert maps.usable() is not None
    grasps = detect_grasps(maps, PostprocessConfig(q_sigma_px=0, q_threshold=0.5))
    assert [(g.v, g.u) for g in grasps] == [(30, 30)]
