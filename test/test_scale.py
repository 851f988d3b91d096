"""Metric scale: the crop follows focal length and scene depth; objects reach the network at the
trained size in network pixels whatever the camera distance."""

from dataclasses import replace
import json
import os

import numpy as np
import pytest
import torch

from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.geometry import CameraIntrinsics, CropTransform
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.model import (
    load_model,
    model_card_path,
    ModelConfig,
    save_random_checkpoint,
)
from grasp_fcn_ros.core.scale import (
    metres_per_pixel,
    metric_crop,
    scene_depth,
    SCENE_DEPTH_STATISTICS,
)
from grasp_fcn_ros.training.dataset import CornellSample, find_samples
from grasp_fcn_ros.training.evaluate import zoomed_intrinsics, zoomed_sample
from grasp_fcn_ros.training.train import TrainConfig, training_scale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The real Cornell images the shipped model was trained on, beside the repository.
CORNELL = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'cornell')
#: The trained scale of these tests: 2 mm per network pixel.
SCALE_M = 0.002


class RecordingBackend:
    """Empty maps; keeps the network inputs; knows its scale."""

    def __init__(self, metres_per_pixel=SCALE_M):
        self.config = replace(ModelConfig(), metres_per_pixel=metres_per_pixel)
        self.inputs = []

    def predict(self, batch):
        self.inputs.append(np.array(batch[0, 0]))
        return np.zeros((len(batch), 4, 400, 400), np.float32)


def table_with_box(width, height, fx, table_m, box_m=0.10, box_height_m=0.04):
    """A fronto-parallel table at ``table_m`` with a square box of side ``box_m`` at the image
    centre, through a pinhole camera of focal ``fx`` (principal point at the centre)."""
    depth = np.full((height, width), table_m, np.float32)
    top_m = table_m - box_height_m
    half_px = box_m / 2 * fx / top_m
    cols = np.abs(np.arange(width) - (width - 1) / 2) <= half_px
    rows = np.abs(np.arange(height) - (height - 1) / 2) <= half_px
    depth[np.ix_(rows, cols)] = top_m
    return depth, CameraIntrinsics(fx, fx, (width - 1) / 2, (height - 1) / 2, width, height)


def box_width_in_network(net_input):
    """Width of the raised box, network pixels, along the middle row."""
    row = net_input[200]
    return int((row < row.max() - 0.02).sum())


def test_crop_side_follows_focal_length_and_depth():
    # a bare table at 0.8 m seen with fx = 600 px: side = 0.002 * 400 * 600 / 0.8 = 600 px
    depth = np.full((720, 1280), 0.8, np.float32)
    camera = CameraIntrinsics(600.0, 600.0, 639.5, 359.5, 1280, 720)
    transform, wanted = metric_crop(depth, camera, SCALE_M, 400)
    assert (transform.size, wanted) == (600, 600)
    assert (transform.x0, transform.y0) == (340, 60)
    # twice the focal length, twice the side; twice the distance, half the side
    camera2 = CameraIntrinsics(300.0, 300.0, 639.5, 359.5, 1280, 720)
    assert metric_crop(depth, camera2, SCALE_M, 400)[0].size == 300
    assert metric_crop(depth * 0.5, camera2, SCALE_M, 400)[0].size == 600
    # fx and fy differ: their geometric mean
    camera3 = CameraIntrinsics(450.0, 800.0, 639.5, 359.5, 1280, 720)
    assert metric_crop(depth, camera3, SCALE_M, 400)[0].size == 600


def test_same_scene_at_several_distances_reaches_the_network_at_one_scale():
    widths, expected, tolerances = [], [], []
    for table_m in (0.4, 0.7, 1.0, 1.4):
        depth, camera = table_with_box(1280, 720, 320.0, table_m)
        backend = RecordingBackend()
        detection = GraspDetector(backend, DetectorConfig()).detect(depth, camera)
        assert detection.scale_mode == 'metric' and not detection.crop_clamped
        widths.append(box_width_in_network(backend.inputs[-1]))
        # the box's top (4 cm above the table) seen at the table's scale
        expected.append(0.10 / (table_m - 0.04) * table_m / SCALE_M)
        # the box is drawn in whole source pixels: one source pixel of error, plus one
        tolerances.append(1.0 / detection.transform.scale + 1.0)
        # the scene depth of the crop is the table's (the box is a small part of it)
        assert metres_per_pixel(depth, detection.transform, camera) == pytest.approx(
            SCALE_M, rel=0.01)
    # 0.10 m at 2 mm per network pixel at the table's depth: 50 network pixels, and a little
    # more for the box top, which is nearer than the table (most at 0.4 m)
    assert all(abs(w - e) <= t for w, e, t in zip(widths, expected, tolerances)), (
        widths, expected)
    assert max(widths) - min(widths) <= 0.1 * np.mean(widths), widths
    # the fixed pixel crop sees the same box 3.5 times larger at 0.4 m than at 1.4 m
    fixed = []
    for table_m in (0.4, 1.4):
        depth, camera = table_with_box(1280, 720, 320.0, table_m)
        backend = RecordingBackend()
        GraspDetector(backend, DetectorConfig(scale_mode='pixels')).detect(depth, camera)
        fixed.append(box_width_in_network(backend.inputs[-1]))
    assert fixed[0] > 3 * fixed[1]


def test_crop_clamps_at_the_image_and_says_so():
    # a far table wants a crop larger than the image: the largest square, flagged
    depth, camera = table_with_box(640, 480, 585.0, 0.5)
    transform, wanted = metric_crop(depth, camera, SCALE_M, 400)
    assert wanted == round(SCALE_M * 400 * 585.0 / 0.5) == 936
    assert (transform.size, transform.x0, transform.y0) == (480, 80, 0)
    detection = GraspDetector(RecordingBackend(), DetectorConfig()).detect(depth, camera)
    assert detection.crop_clamped and detection.wanted_crop_px == 936


def test_offsets_shift_the_metric_crop_and_limit_it():
    depth = np.full((480, 640), 1.0, np.float32)
    camera = CameraIntrinsics(585.0, 585.0, 319.5, 239.5, 640, 480)
    transform, wanted = metric_crop(depth, camera, SCALE_M, 400, offset_x_px=50,
                                    offset_y_px=-20)
    assert wanted == round(SCALE_M * 400 * 585.0) == 468
    # the offsets leave room for 440 px at most (480 - 2 * 20)
    assert (transform.size, transform.x0, transform.y0) == (440, 150, 0)


def test_pixels_mode_and_models_without_a_scale_use_crop_size():
    depth, camera = table_with_box(1280, 720, 640.0, 0.5)
    for backend, config in ((RecordingBackend(), DetectorConfig(scale_mode='pixels')),
                            (RecordingBackend(0.0), DetectorConfig())):
        detection = GraspDetector(backend, config).detect(depth, camera)
        assert detection.scale_mode == 'pixels' and detection.transform.size == 400
    # without intrinsics there is no metric crop either
    detection = GraspDetector(RecordingBackend(), DetectorConfig()).detect(depth)
    assert detection.scale_mode == 'pixels'


def test_scene_depth_statistics():
    depth = np.array([[0.5, 0.6, 0.7, 0.8], [0.0, np.nan, 9.0, 0.9]], np.float32)
    window = CropTransform(0, 0, 2, 2)
    assert scene_depth(depth, window) == pytest.approx(0.55)
    window = CropTransform(0, 0, 4, 4)
    full = np.vstack([depth, depth])
    assert scene_depth(full, window, 'median', 0.1, 5.0) == pytest.approx(0.7)
    assert scene_depth(full, window, 'lower_quartile', 0.1, 5.0) == pytest.approx(0.6)
    with pytest.raises(ValueError, match='scene depth statistic'):
        scene_depth(full, window, 'mean')
    assert scene_depth(np.zeros((4, 4)), window) is None
    with pytest.raises(ValueError, match='scale_mode'):
        DetectorConfig(scale_mode='auto')


def test_scene_depth_of_a_large_window_reads_a_subsample_within_a_millimetre():
    rng = np.random.default_rng(3)
    depth, _ = table_with_box(640, 480, 585.0, 0.7)
    depth = (depth + rng.normal(0.0, 0.003, depth.shape)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.05] = 0.0
    window = CropTransform(80, 0, 480, 400)
    crop = window.crop(depth)
    for statistic, percent in SCENE_DEPTH_STATISTICS.items():
        exact = np.percentile(crop[crop > 0], percent)
        assert scene_depth(depth, window, statistic) == pytest.approx(exact, abs=1e-3)


def test_zoomed_sample_is_what_a_longer_lens_sees():
    depth, camera = table_with_box(640, 480, 585.0, 0.7)
    grasp = Grasp2D(319.5, 239.5, 0.3, 80.0, jaw_px=40.0)
    sample = CornellSample('pcd0100', '', None, '', depth_m=depth, grasps=[grasp])
    zoomed = zoomed_sample(sample, 2.0)
    camera2 = zoomed_intrinsics(camera, 2.0, 640, 480)
    assert zoomed.depth_m.shape == (960, 1280)
    assert (camera2.fx, camera2.cx, camera2.cy) == (1170.0, 639.5, 479.5)
    g = zoomed.grasps[0]
    assert (g.u, g.v, g.width_px, g.jaw_px) == pytest.approx((639.5, 479.5, 160.0, 80.0))
    assert g.angle == pytest.approx(0.3)
    # both views give the same metric crop content: the crop doubles with the focal length
    side = metric_crop(depth, camera, SCALE_M, 400)[0].size
    assert metric_crop(zoomed.depth_m, camera2, SCALE_M, 400)[0].size == pytest.approx(
        2 * side, abs=2)


def test_model_card_gives_an_older_checkpoint_its_scale(tmp_path):
    path = str(tmp_path / 'old.pt')
    save_random_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    del payload['config']['metres_per_pixel']
    torch.save(payload, path)
    assert load_model(path)[0].config.metres_per_pixel == 0.0
    with open(model_card_path(path), 'w') as stream:
        json.dump({'metres_per_pixel': 0.0025}, stream)
    assert load_model(path)[0].config.metres_per_pixel == 0.0025
    # a checkpoint that records its scale keeps it
    save_random_checkpoint(path)
    assert load_model(path)[0].config.metres_per_pixel == 0.0


@pytest.mark.skipif(not os.path.isdir(CORNELL), reason=f'no Cornell data at {CORNELL}')
def test_shipped_model_card_is_the_scale_of_its_training_images():
    samples = [s.load() for s in find_samples(CORNELL)[0]]
    config = TrainConfig(dataset=CORNELL, output_dir='')
    with open(os.path.join(ROOT, 'models', 'grasp_fcn_cornell.json')) as stream:
        card = json.load(stream)
    assert card['metres_per_pixel'] == pytest.approx(training_scale(samples, config, 400),
                                                     rel=1e-9)
