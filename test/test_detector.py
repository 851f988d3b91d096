import numpy as np
import pytest

from grasp_fcn_ros.core.backends import create_backend
from grasp_fcn_ros.core.depth import DepthError
from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.geometry import CameraIntrinsics, GeometryError
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.model import ModelConfig, ModelError
from grasp_fcn_ros.core.postprocess import PostprocessConfig

from scenes import box_on_plane, INTRINSICS


class MapBackend:
    """Always returns the same output maps, and records its inputs."""

    def __init__(self, output):
        self.output = output
        self.config = ModelConfig()
        self.inputs = []

    def predict(self, batch):
        self.inputs.append(batch)
        return self.output[None]


def _oracle_for(grasp_net, sigma_px=6.0):
    """Maps of one grasp: a Gaussian Q blob at its centre, its angle and its width everywhere
    (the detector reads the raw width map by default)."""
    rows, cols = np.mgrid[0:400, 0:400]
    out = np.zeros((4, 400, 400), np.float32)
    out[0] = np.exp(-((cols - grasp_net.u) ** 2 + (rows - grasp_net.v) ** 2) / (2 * sigma_px ** 2))
    out[1] = np.cos(2 * grasp_net.angle)
    out[2] = np.sin(2 * grasp_net.angle)
    out[3] = grasp_net.width_px / 150.0
    return MapBackend(out)


def test_known_map_gives_the_grasp_in_source_pixels_and_3d():
    box = (300, 220, 60, 40)
    depth = box_on_plane(box=box)
    # crop 400 centred in 640x480: network = source - (120, 40)
    truth = Grasp2D(u=330.0 - 120, v=240.0 - 40, angle=np.deg2rad(10), width_px=60.0)
    detector = GraspDetector(_oracle_for(truth))
    det = detector.detect(depth, INTRINSICS)
    best = det.grasps_2d[0]
    assert (best.u, best.v) == pytest.approx((330.0, 240.0), abs=1e-6)
    assert best.angle == pytest.approx(np.deg2rad(10), abs=1e-3)
    assert best.width_px == pytest.approx(60.0, rel=1e-5)
    pose = det.grasps_3d[0]
    np.testing.assert_allclose(pose.position_m,
                               INTRINSICS.back_project(best.u, best.v, 0.65), atol=1e-9)
    assert pose.width_m == pytest.approx(best.width_px * 0.65 / 585, rel=1e-6)
    assert set(det.timings_ms) == {'preprocess', 'inference', 'postprocess', 'projection'}
    assert det.network_input.shape == (400, 400)


def test_network_input_is_normalised_crop():
    depth = box_on_plane()
    backend = MapBackend(np.zeros((4, 400, 400), np.float32))
    GraspDetector(backend).detect(depth)
    x = backend.inputs[0]
    assert x.shape == (1, 1, 400, 400) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-5


def test_larger_crop_is_resized_and_mapped_back():
    depth = box_on_plane(width=1280, height=960, box=(600, 440, 120, 80))
    truth = Grasp2D(u=200.0, v=200.0, angle=0.0, width_px=50.0)
    config = DetectorConfig(crop_size_px=800)
    det = GraspDetector(_oracle_for(truth), config).detect(depth)
    best = det.grasps_2d[0]
    # network (200, 200) -> source ((200 + 0.5) * 2 - 0.5 + 240, ... + 80)
    assert (best.u, best.v) == pytest.approx((640.5, 480.5), abs=1e-6)
    assert best.width_px == pytest.approx(100.0, rel=1e-5)


def test_invalid_holes_are_inpainted_before_the_network():
    depth = box_on_plane()
    depth[100:200, 200:260] = np.nan
    depth[300:310, :] = 0.0
    backend = MapBackend(np.zeros((4, 400, 400), np.float32))
    GraspDetector(backend).detect(depth)
    assert np.all(np.isfinite(backend.inputs[0]))


def test_threshold_leaves_no_grasp():
    truth = Grasp2D(u=200.0, v=200.0, angle=0.0, width_px=50.0)
    config = DetectorConfig(postprocess=PostprocessConfig(q_threshold=1.01))
    det = GraspDetector(_oracle_for(truth), config).detect(box_on_plane(), INTRINSICS)
    assert det.grasps_2d == [] and det.grasps_3d == []


@pytest.mark.parametrize('fill', [np.nan, 0.0, 50.0])
def test_unusable_depth_raises_depth_error(fill):
    backend = MapBackend(np.zeros((4, 400, 400), np.float32))
    with pytest.raises(DepthError, match='no valid depth'):
        GraspDetector(backend).detect(np.full((480, 640), fill, np.float32))


def test_small_image_and_wrong_intrinsics_raise_geometry_error():
    detector = GraspDetector(MapBackend(np.zeros((4, 400, 400), np.float32)))
    with pytest.raises(GeometryError, match='smaller than the crop'):
        detector.detect(np.ones((240, 320), np.float32))
    with pytest.raises(GeometryError, match='camera_info is for'):
        detector.detect(box_on_plane(), CameraIntrinsics(585, 585, 320, 240, 1280, 720))
    with pytest.raises(DepthError):
        detector.detect(np.ones((4, 4, 4), np.float32))


def test_random_checkpoint_runs_end_to_end(random_model_path):
    backend = create_backend(random_model_path, 'torch', 'cpu')
    config = DetectorConfig(postprocess=PostprocessConfig(q_threshold=0.0, max_grasps=3))
    det = GraspDetector(backend, config).detect(box_on_plane(), INTRINSICS)
    assert len(det.grasps_2d) == 3
    q = [g.quality for g in det.grasps_2d]
    assert q == sorted(q, reverse=True)
    for g in det.grasps_3d:
        assert np.all(np.isfinite(g.position_m)) and 0.6 < g.depth_m < 0.75


def test_missing_and_corrupt_checkpoints_name_the_path(tmp_path):
    missing = tmp_path / 'none.pt'
    with pytest.raises(ModelError, match='none.pt'):
        create_backend(str(missing))
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a checkpoint')
    with pytest.raises(ModelError, match='corrupt.pt'):
        create_backend(str(corrupt))


def test_unknown_backend_and_device_are_refused(random_model_path):
    with pytest.raises(ModelError, match='unknown backend'):
        create_backend(random_model_path, 'tensorrt')
    with pytest.raises(ModelError, match='unknown device'):
        create_backend(random_model_path, 'torch', 'tpu')
