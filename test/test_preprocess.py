"""One preprocessing: training examples, the detector (what the node runs) and known answers."""

import numpy as np
import pytest

from grasp_fcn_ros.core.depth import DepthError
from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.geometry import CropTransform
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.model import ModelConfig
from grasp_fcn_ros.core.preprocess import fill_window, prepare_input, resize_square
from grasp_fcn_ros.training.dataset import (
    _augmented_transforms,
    AugmentConfig,
    CornellSample,
    make_example,
)

from scenes import box_on_plane


class RecordingBackend:
    """Returns empty maps and keeps the network inputs it was given."""

    def __init__(self):
        self.config = ModelConfig()
        self.inputs = []

    def predict(self, batch):
        self.inputs.append(np.array(batch))
        return np.zeros((len(batch), 4, 400, 400), np.float32)


def _frame_with_defects():
    """A box on a table with NaN holes, zero pixels, a too-near and a too-far patch."""
    depth = box_on_plane()
    depth[200:215, 280:300] = np.nan        # a hole on the box edge
    depth[100:140, 100:160] = 0.0           # a dropout on the table
    depth[300:320, 400:440] = 0.05          # nearer than min_depth
    depth[350:380, 200:260] = 9.0           # farther than max_depth
    depth[:, :3] = np.nan                   # invalid border columns
    return depth


def _sample(depth, grasps=()):
    return CornellSample('pcd0100', '', None, '', depth_m=depth, grasps=list(grasps))


@pytest.mark.parametrize('crop_px', [480, 400, 320, 250])
@pytest.mark.parametrize('depth_range', [(0.1, 5.0), (0.6, 0.9)])
def test_training_input_equals_the_detectors(crop_px, depth_range):
    depth = _frame_with_defects()
    backend = RecordingBackend()
    config = DetectorConfig(crop_size_px=crop_px, min_depth_m=depth_range[0],
                            max_depth_m=depth_range[1])
    detection = GraspDetector(backend, config).detect(depth)
    x, _ = make_example(_sample(depth), 400, crop_px, 150.0, min_depth_m=depth_range[0],
                        max_depth_m=depth_range[1])
    np.testing.assert_array_equal(x[0], detection.network_input)
    np.testing.assert_array_equal(x[0], backend.inputs[0][0, 0])
    assert np.all(np.isfinite(x))


def test_out_of_range_depth_is_inpainted_not_kept():
    # a table at 0.70 m with a patch at 9 m: with max_depth 5 m the patch is filled from the
    # table around it, so the network never sees the 8.3 m step
    depth = box_on_plane(box=(0, 0, 1, 1))
    depth[200:240, 300:340] = 9.0
    window = CropTransform.centred(640, 480, 400, 400)
    filled = fill_window(depth, window, 0.1, 5.0)
    np.testing.assert_allclose(filled, 0.70, atol=1e-5)
    unmasked = fill_window(depth, window, 0.1, 10.0)
    assert unmasked.max() == pytest.approx(9.0)


def test_shrinking_averages_areas_and_enlarging_interpolates():
    # a 4x4 checkerboard of 2x2 blocks shrinks to the block means exactly
    image = np.kron(np.array([[1.0, 3.0], [5.0, 7.0]], np.float32), np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(resize_square(image, 2), [[1.0, 3.0], [5.0, 7.0]])
    # a ramp 0, 1 enlarged to 4 pixels: centres at -0.25, 0.25, 0.75, 1.25 of the source
    ramp = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    np.testing.assert_allclose(resize_square(ramp, 4)[0], [0.0, 0.25, 0.75, 1.0])


def test_window_without_usable_depth_is_refused():
    depth = box_on_plane()
    with pytest.raises(DepthError, match='no valid depth inside the crop'):
        prepare_input(depth, CropTransform.centred(640, 480, 400, 400), 1.0, 2.0)


def test_augmented_examples_keep_depth_and_labels_together():
    # a raised box with a grasp across it: wherever augmentation moves and turns the window,
    # the Q = 1 pixels lie on the box (nearer than the table)
    box = (280, 200, 60, 40)
    depth = box_on_plane(box=box)
    grasp = Grasp2D(310.0, 220.0, 0.0, 80.0, jaw_px=20.0)
    sample = _sample(depth, [grasp])
    rng = np.random.default_rng(5)
    for _ in range(8):
        x, y = make_example(sample, 400, 400, 150.0, rng, AugmentConfig())
        on_grasp = y[0] > 0
        assert on_grasp.sum() > 50
        box_level = x[0].min()
        assert np.all(np.abs(x[0][on_grasp] - box_level) < 0.005)
        assert np.all(np.isfinite(x))


def test_rotation_corners_come_from_the_image_not_the_border():
    # a vertical ramp of depth, the window turned in the plane: its corners hold ramp values
    # from outside the unturned window (the ramp's span grows by cos + sin of the angle), not
    # copies of the window's edge
    rows = np.arange(480, dtype=np.float32)[:, None]
    depth = np.broadcast_to(0.5 + rows * 1e-3, (480, 640)).copy()
    sample = _sample(depth, [Grasp2D(320.0, 240.0, 0.0, 40.0)])
    augment = AugmentConfig(rotation_deg=30.0, zoom_min=1.0, shift_px=0.0)
    unturned, _ = make_example(sample, 400, 300, 150.0)
    for seed in range(4):
        _, _, rotation = _augmented_transforms(sample, depth.shape, 400, 300,
                                               np.random.default_rng(seed), augment)
        turn = np.arctan2(rotation[1, 0], rotation[0, 0])
        x, _ = make_example(sample, 400, 300, 150.0, np.random.default_rng(seed), augment)
        expected = np.ptp(unturned[0]) * (abs(np.cos(turn)) + abs(np.sin(turn)))
        assert np.ptp(x[0]) == pytest.approx(expected, rel=0.01)
