"""Property-based tests of the pure core: arbitrary depth buffers, intrinsics and network maps.

The contract checked: the core raises nothing but its documented errors (DepthError,
GeometryError), and every grasp it returns lies inside the source image with finite values;
every 3-D grasp has a finite position, a unit quaternion and a depth inside the valid range.
Most properties use a fake backend whose output maps hypothesis draws (NaN, inf, huge values
included); a few examples run the real network with random weights.
"""

from hypothesis import assume, event, example, given, HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
import numpy as np
import pytest

from grasp_fcn_ros.core.backends import create_backend
from grasp_fcn_ros.core.depth import decode_depth, DEPTH_ENCODINGS, DepthError
from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.geometry import CameraIntrinsics, GeometryError
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.model import ModelConfig
from grasp_fcn_ros.core.postprocess import find_peaks, PostprocessConfig
from grasp_fcn_ros.core.projection import project_grasp, robust_depth

from scenes import box_on_plane

#: A few seconds per property on a loaded 2-core machine.
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: The end-to-end property: most draws are refused (GeometryError, DepthError), so more of them.
MANY = settings(FAST, max_examples=400)
#: The real network: about a second per example here.
NETWORK = settings(max_examples=6, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])

#: The errors the core documents for bad input.
DOCUMENTED = (DepthError, GeometryError)

#: Overflow and NaN warnings from absurd inputs are expected; results are checked instead.
pytestmark = pytest.mark.filterwarnings('ignore::RuntimeWarning')

any_float32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
any_float = st.floats(allow_nan=True, allow_infinity=True)
#: Focal lengths and principal points: usual ones, and zero, negative, NaN, inf, tiny, huge.
focal = st.one_of(st.floats(1.0, 5000.0), any_float)
principal = st.one_of(st.floats(-100.0, 1000.0), any_float)


class MapBackend:
    """A backend that returns fixed maps (4, S, S) whatever the input."""

    name = 'fake'
    device = 'cpu'

    def __init__(self, maps, max_width_px=150.0):
        self.maps = np.asarray(maps, dtype=np.float32)
        self.config = ModelConfig(input_size=self.maps.shape[-1], max_width_px=max_width_px)

    def predict(self, batch):
        assert batch.shape == (1, 1, self.config.input_size, self.config.input_size)
        assert np.all(np.isfinite(batch)), 'non-finite network input'
        return self.maps[None]


# --- strategies -------------------------------------------------------------------------------

@st.composite
def depth_pixels(draw, max_side=40):
    """Raw depth pixels as a camera sends them: uint16 (mm) or float32 (m), arbitrary values
    or a plausible scene with holes, any size down to 1x1."""
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    encoding = draw(st.sampled_from(sorted(DEPTH_ENCODINGS)))
    dtype = DEPTH_ENCODINGS[encoding]
    if draw(st.booleans()):
        # a table with a box, some pixels replaced by special values
        scene = box_on_plane(width, height, box=(width // 3, height // 3, max(width // 3, 1),
                                                 max(height // 3, 1)), dtype=dtype)
        specials = (st.sampled_from([0, 1, 65535]) if dtype.kind == 'u' else st.sampled_from(
            [0.0, -1.0, np.nan, np.inf, -np.inf, 1e30, 3.4e38, 1e-40]))
        for _ in range(draw(st.integers(0, 8))):
            row, col = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
            scene[row, col] = draw(specials)
        pixels = scene
    elif dtype.kind == 'u':
        pixels = draw(arrays(np.uint16, (height, width)))
    else:
        pixels = draw(arrays(np.float32, (height, width), elements=any_float32))
    return encoding, pixels


def encode(pixels, encoding, pad=0, big_endian=False):
    """The ``data`` and ``step`` of a sensor_msgs/Image holding ``pixels``."""
    dtype = DEPTH_ENCODINGS[encoding].newbyteorder('>' if big_endian else '<')
    rows = np.ascontiguousarray(pixels.astype(dtype)).view(np.uint8).reshape(
        pixels.shape[0], -1)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xEE, np.uint8)], axis=1)
    return rows.tobytes(), rows.shape[1]


@st.composite
def intrinsics(draw, width, height):
    """None (2-D only), a calibrated camera, or anything (zero, negative, NaN focal lengths;
    any principal point; a size that is not the image's)."""
    kind = draw(st.sampled_from(['none', 'calibrated', 'calibrated', 'calibrated', 'any']))
    if kind == 'none':
        return None
    if kind == 'calibrated':
        w, h = draw(st.sampled_from([(0, 0), (width, height)]))
        return CameraIntrinsics(draw(st.floats(1.0, 5000.0)), draw(st.floats(1.0, 5000.0)),
                                draw(st.floats(-100.0, 1000.0)),
                                draw(st.floats(-100.0, 1000.0)), w, h)
    w, h = draw(st.sampled_from([(0, 0), (width, height), (width + 1, height), (64, 48)]))
    return CameraIntrinsics(draw(focal), draw(focal), draw(principal), draw(principal), w, h)


@st.composite
def detector_configs(draw):
    post = PostprocessConfig(
        q_threshold=draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0))),
        max_grasps=draw(st.integers(1, 8)),
        min_distance_px=draw(st.integers(1, 12)), q_sigma_px=draw(st.floats(0.0, 4.0)),
        angle_sigma_px=draw(st.floats(0.0, 4.0)), width_sigma_px=draw(st.floats(0.0, 4.0)))
    min_depth = draw(st.floats(0.0, 10.0))
    max_depth = draw(st.one_of(st.floats(min_depth, 100.0), st.just(np.inf)))
    return DetectorConfig(
        crop_size_px=draw(st.one_of(st.just(0), st.integers(1, 12), st.integers(1, 48))),
        crop_offset_x_px=draw(st.one_of(st.just(0), st.integers(-3, 3), st.integers(-24, 24))),
        crop_offset_y_px=draw(st.one_of(st.just(0), st.integers(-3, 3), st.integers(-24, 24))),
        min_depth_m=min_depth,
        max_depth_m=max_depth, depth_radius_px=draw(st.integers(0, 4)), postprocess=post)


@st.composite
def network_maps(draw):
    """Raw network output (4, S, S): arbitrary floats, or plausible maps with special values."""
    size = draw(st.sampled_from([1, 2, 3, 8, 16, 24]))
    if draw(st.booleans()):
        return draw(arrays(np.float32, (4, size, size), elements=any_float32))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    maps = rng.uniform(-1.0, 1.0, (4, size, size)).astype(np.float32)
    maps[0] = np.abs(maps[0])
    maps[3] = np.abs(maps[3]) * draw(st.sampled_from([1.0, 100.0, 1e30]))
    for _ in range(draw(st.integers(0, 6))):
        channel = draw(st.integers(0, 3))
        row, col = draw(st.integers(0, size - 1)), draw(st.integers(0, size - 1))
        maps[channel, row, col] = draw(st.sampled_from(
            [np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 0.0, 1.0]))
    return maps


# --- checks -----------------------------------------------------------------------------------

def inside(u, v, width, height):
    """A pixel coordinate that rounds to a pixel of a width x height image."""
    return -0.5 <= u < width - 0.5 and -0.5 <= v < height - 0.5


def in_range(depth_m, min_depth_m, max_depth_m):
    """Depth within the valid range, compared at the float32 precision of depth images."""
    return np.float32(min_depth_m) <= depth_m <= np.float32(max_depth_m)


def detect_or_documented_error(detector, depth_m, camera):
    """Run the detector; None when it raised a documented error (recorded as an event)."""
    try:
        detection = detector.detect(depth_m, camera)
    except DOCUMENTED as exc:
        event(f'raised {type(exc).__name__}')
        return None
    event(f'{len(detection.grasps_2d)} 2-D and {len(detection.grasps_3d)} 3-D grasps'
          if detection.grasps_2d else 'no grasp')
    return detection


def check_detection(detection, depth_m, config, with_intrinsics):
    height, width = depth_m.shape
    post = config.postprocess
    assert len(detection.grasps_2d) <= post.max_grasps
    qualities = [g.quality for g in detection.grasps_2d]
    assert qualities == sorted(qualities, reverse=True), 'grasps are not best first'
    for g in detection.grasps_2d:
        values = [g.u, g.v, g.angle, g.width_px, g.quality]
        assert np.all(np.isfinite(values)), g
        assert inside(g.u, g.v, width, height), (g, width, height)
        # quality maps are float32: the threshold applies at float32 precision
        assert np.float32(post.q_threshold) <= g.quality <= 1.0 + 1e-6, g
        assert g.width_px >= 0.0, g
        assert -np.pi / 2 - 1e-6 <= g.angle <= np.pi / 2 + 1e-6, g
    if not with_intrinsics:
        assert detection.grasps_3d == []
    assert len(detection.grasps_3d) <= len(detection.grasps_2d)
    for g in detection.grasps_3d:
        check_pose(g, width, height, config.min_depth_m, config.max_depth_m)


def check_pose(g, width, height, min_depth_m, max_depth_m):
    assert np.all(np.isfinite(g.position_m)) and np.all(np.isfinite(g.quaternion)), g
    assert np.isfinite([g.width_m, g.quality, g.angle, g.u, g.v, g.depth_m]).all(), g
    assert abs(np.linalg.norm(g.quaternion) - 1.0) < 1e-6, g
    assert inside(g.u, g.v, width, height), g
    assert in_range(g.depth_m, min_depth_m, max_depth_m) and g.depth_m > 0, g
    assert g.position_m[2] == pytest.approx(g.depth_m), g
    assert g.width_m >= 0.0


# --- decode_depth -----------------------------------------------------------------------------

@FAST
@given(data=st.data(), encoding=st.sampled_from(sorted(DEPTH_ENCODINGS)),
       height=st.integers(-2, 6), width=st.integers(-2, 6), pad=st.integers(-3, 5),
       extra=st.integers(-20, 20), big_endian=st.booleans())
def test_decode_any_buffer_length_decodes_or_raises_depth_error(
        data, encoding, height, width, pad, extra, big_endian):
    """Data of any length against step x height: decoded exactly, or DepthError."""
    itemsize = DEPTH_ENCODINGS[encoding].itemsize
    step = max(width, 0) * itemsize + pad
    size = max(step * max(height, 0) + extra, 0)
    raw = data.draw(st.binary(min_size=size, max_size=size))
    as_type = data.draw(st.sampled_from([bytes, bytearray, memoryview]))
    row_bytes = width * itemsize
    decodable = (height > 0 and width > 0 and step >= row_bytes
                 and step * (height - 1) + row_bytes <= size <= step * height)
    try:
        depth = decode_depth(as_type(raw), height, width, encoding, step, big_endian)
    except DepthError:
        assert not decodable, (height, width, step, size)
        return
    assert decodable, (height, width, step, size)
    assert depth.shape == (height, width) and depth.dtype == np.float32
    padded = raw + bytes(step * height - size)
    dtype = DEPTH_ENCODINGS[encoding].newbyteorder('>' if big_endian else '<')
    expected = np.array([np.frombuffer(padded[r * step:r * step + row_bytes], dtype)
                         for r in range(height)]).astype(np.float32)
    if dtype.kind == 'u':
        expected *= np.float32(0.001)
    np.testing.assert_array_equal(depth, expected)


@FAST
@given(encoding=st.text(max_size=8), height=st.integers(-5, 5), width=st.integers(-5, 5),
       step=st.integers(-10, 30), raw=st.binary(max_size=64))
def test_decode_garbage_fields_raise_only_depth_error(encoding, height, width, step, raw):
    try:
        depth = decode_depth(raw, height, width, encoding, step)
    except DepthError:
        return
    assert encoding in DEPTH_ENCODINGS and depth.shape == (height, width)


# --- the detector: decode -> detect -----------------------------------------------------------

@MANY
@given(data=st.data(), pixels=depth_pixels(), config=detector_configs(), maps=network_maps(),
       pad=st.integers(0, 3), big_endian=st.booleans())
def test_detect_on_any_depth_and_intrinsics_is_safe(data, pixels, config, maps, pad,
                                                    big_endian):
    encoding, values = pixels
    height, width = values.shape
    raw, step = encode(values, encoding, pad, big_endian)
    depth_m = decode_depth(raw, height, width, encoding, step, big_endian)
    camera = data.draw(intrinsics(width, height))
    detection = detect_or_documented_error(GraspDetector(MapBackend(maps), config), depth_m,
                                           camera)
    if detection is not None:
        check_detection(detection, depth_m, config, camera is not None)


@FAST
@given(pixels=depth_pixels(max_side=24), maps=network_maps())
def test_detect_with_usable_intrinsics_gives_finite_poses(pixels, maps):
    """With a calibrated camera and a plausible scene, the 3-D poses are checked too."""
    encoding, values = pixels
    height, width = values.shape
    raw, step = encode(values, encoding)
    depth_m = decode_depth(raw, height, width, encoding, step)
    camera = CameraIntrinsics(500.0, 520.0, width / 2, height / 2, width, height)
    config = DetectorConfig(crop_size_px=0, min_depth_m=0.1, max_depth_m=5.0,
                            postprocess=PostprocessConfig(q_threshold=0.0))
    detection = detect_or_documented_error(GraspDetector(MapBackend(maps), config), depth_m,
                                           camera)
    if detection is not None:
        check_detection(detection, depth_m, config, True)


@pytest.fixture(scope='module')
def network(random_model_path):
    return create_backend(random_model_path, 'torch', 'cpu')


@NETWORK
@given(pixels=depth_pixels(max_side=64), crop=st.sampled_from([0, 16, 48]),
       fx=focal, cx=principal)
@example(pixels=('16UC1', box_on_plane(dtype=np.uint16)), crop=400, fx=585.0, cx=320.0)
@example(pixels=('32FC1', np.full((3, 5), np.nan, np.float32)), crop=0, fx=1.0, cx=0.0)
def test_real_network_on_any_depth_is_safe(network, pixels, crop, fx, cx):
    encoding, values = pixels
    height, width = values.shape
    raw, step = encode(values, encoding)
    depth_m = decode_depth(raw, height, width, encoding, step)
    camera = CameraIntrinsics(fx, fx, cx, height / 2, width, height)
    config = DetectorConfig(crop_size_px=crop, postprocess=PostprocessConfig(q_threshold=0.0))
    detection = detect_or_documented_error(GraspDetector(network, config), depth_m, camera)
    if detection is not None:
        check_detection(detection, depth_m, config, True)


# --- projection -------------------------------------------------------------------------------

@FAST
@given(depth=arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 12)),
                    elements=any_float32),
       u=any_float, v=any_float, radius=st.integers(-2, 6),
       min_depth=st.floats(0.0, 10.0), span=st.one_of(st.floats(0.0, 100.0),
                                                      st.just(np.inf)))
@example(depth=np.ones((2, 2), np.float32), u=np.nan, v=0.0, radius=1, min_depth=0.0,
         span=np.inf)
def test_robust_depth_is_finite_and_in_range_or_none(depth, u, v, radius, min_depth, span):
    max_depth = min_depth + span
    z = robust_depth(depth, u, v, radius, min_depth, max_depth)
    if z is not None:
        assert np.isfinite(z) and z > 0 and in_range(z, min_depth, max_depth), z


@FAST
@given(depth=arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 12)),
                    elements=st.one_of(any_float32, st.floats(0.25, 3.0, width=32))),
       u=any_float, v=any_float, angle=any_float,
       width_px=st.one_of(st.floats(0.0, 200.0), any_float),
       quality=st.floats(0.0, 1.0), fx=focal, fy=focal, cx=principal, cy=principal,
       radius=st.integers(0, 4))
@example(depth=np.ones((2, 2), np.float32), u=0.0, v=0.0, angle=0.0, width_px=10.0,
         quality=1.0, fx=1e-300, fy=1.0, cx=0.0, cy=0.0, radius=1)
@example(depth=np.ones((1, 1), np.float32), u=0.0, v=0.5, angle=0.0, width_px=0.0,
         quality=0.0, fx=1.0, fy=1.0, cx=0.0, cy=0.0, radius=0)  # v = 0.5 is in row 1
def test_project_grasp_never_returns_a_non_finite_pose(depth, u, v, angle, width_px, quality,
                                                       fx, fy, cx, cy, radius):
    camera = CameraIntrinsics(fx, fy, cx, cy)
    try:
        camera.validate()
    except GeometryError:
        assume(False)  # the detector refuses such a camera before projecting
    height, width = depth.shape
    grasp = Grasp2D(u, v, angle, width_px, quality)
    pose = project_grasp(grasp, depth, camera, radius, 0.1, 5.0)
    if pose is not None:
        check_pose(pose, width, height, 0.1, 5.0)


@FAST
@given(u=st.one_of(st.floats(-1000.0, 2000.0), any_float),
       v=st.one_of(st.floats(-1000.0, 2000.0), any_float),
       angle=st.floats(-4.0, 4.0), width_px=st.one_of(st.floats(0.0, 400.0), any_float),
       model=st.sampled_from(['plumb_bob', 'rational_polynomial', 'equidistant']),
       coefficients=st.lists(st.floats(-2.0, 2.0), min_size=8, max_size=8))
def test_distorted_camera_never_returns_a_non_finite_pose(u, v, angle, width_px, model,
                                                          coefficients):
    size = {'plumb_bob': 5, 'rational_polynomial': 8, 'equidistant': 4}[model]
    camera = CameraIntrinsics(500.0, 510.0, 320.0, 240.0, 640, 480, model,
                              coefficients[:size])
    depth = np.full((480, 640), 0.8, np.float32)
    pose = project_grasp(Grasp2D(u, v, angle, width_px), depth, camera, 1, 0.1, 5.0)
    if pose is not None:
        check_pose(pose, 640, 480, 0.1, 5.0)
        np.testing.assert_allclose(camera.project(pose.position_m), [u, v], atol=0.02)


# --- peaks ------------------------------------------------------------------------------------

@FAST
@given(quality=arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 30)),
                      elements=any_float32),
       threshold=st.one_of(st.floats(0.0, 1.0), any_float), distance=st.integers(-1, 15),
       max_peaks=st.integers(-1, 12))
@example(quality=np.array([[np.inf, np.nan, -np.inf, 0.5]], np.float32), threshold=0.0,
         distance=0, max_peaks=3)
@example(quality=np.array([[np.finfo(np.float32).max, 0.0, np.inf]], np.float32),
         threshold=0.0, distance=0, max_peaks=2)
def test_find_peaks_in_bounds_and_best_first(quality, threshold, distance, max_peaks):
    peaks = find_peaks(quality, threshold, distance, max_peaks)
    assert peaks.ndim == 2 and peaks.shape[1] == 2
    assert peaks.shape[0] <= max(max_peaks, 0)
    rows, cols = quality.shape
    assert np.all((peaks[:, 0] >= 0) & (peaks[:, 0] < rows))
    assert np.all((peaks[:, 1] >= 0) & (peaks[:, 1] < cols))
    values = quality[peaks[:, 0], peaks[:, 1]]
    assert not np.any(np.isnan(values)), 'a NaN pixel is no peak'
    assert np.all(values >= threshold)  # +inf counts as the best quality there is
    assert np.all(values[:-1] >= values[1:]), 'peaks are not sorted best first'
    d = max(distance, 1)
    for i in range(len(peaks)):
        for j in range(i):
            assert ((peaks[i] - peaks[j]) ** 2).sum() > d * d, 'peaks closer than min_distance'


# --- regressions found by the properties above ------------------------------------------------

def test_nan_angle_or_width_in_network_output_gives_no_grasp_there():
    maps = np.zeros((4, 16, 16), np.float32)
    maps[0, 4, 4] = maps[0, 12, 12] = 1.0
    maps[1, 4, 4] = np.nan  # cos 2phi of the first peak
    maps[3] = 0.1
    maps[3, 12, 12] = np.inf  # width of the second peak
    maps[0, 8, 8] = 0.5  # an ordinary peak
    config = DetectorConfig(crop_size_px=0, postprocess=PostprocessConfig(
        q_threshold=0.1, q_sigma_px=0.0, angle_sigma_px=0.0, width_sigma_px=0.0))
    detection = GraspDetector(MapBackend(maps), config).detect(np.full((16, 16), 0.7))
    assert [(g.u, g.v) for g in detection.grasps_2d] == [(8.0, 8.0)]


def test_depths_too_large_to_normalise_raise_depth_error():
    depth = np.array([[0.0, 3.4e38], [0.7, 0.7]], np.float32)
    config = DetectorConfig(crop_size_px=0, min_depth_m=0.0, max_depth_m=np.inf)
    with pytest.raises(DepthError, match='too large to normalise'):
        GraspDetector(MapBackend(np.zeros((4, 1, 1), np.float32)), config).detect(depth)
