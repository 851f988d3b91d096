"""Test-time averaging: the mirrored view and several models as one backend."""

import cv2
import numpy as np
import pytest

from grasp_fcn_ros.core.detector import GraspDetector
from grasp_fcn_ros.core.ensemble import AveragedBackend, mirror_output
from grasp_fcn_ros.core.grasp import angle_difference, direction
from grasp_fcn_ros.core.model import ModelConfig, ModelError

from scenes import INTRINSICS


class ConstantBackend:
    """Returns the same maps for any input."""

    name = 'constant'
    device = 'cpu'
    meta = {}

    def __init__(self, output, config=None):
        self.output = np.asarray(output, np.float32)
        self.config = config or ModelConfig()

    def predict(self, batch):
        return np.repeat(self.output[None], len(batch), axis=0)


class BarOracle:
    """A network that mirrors as a trained one should: it finds the raised part of the input
    (nearer than the mean) and puts a Q blob at its centroid with the grasp across its long
    axis (from the second moments), so a mirrored input gives the mirrored maps."""

    name = 'bar oracle'
    device = 'cpu'
    meta = {}
    config = ModelConfig()

    def predict(self, batch):
        outputs = []
        for image in batch[:, 0]:
            rows, cols = np.nonzero(image < -0.01)
            cu, cv = cols.mean(), rows.mean()
            du, dv = cols - cu, rows - cv
            # long axis in image coordinates (v down), then direction()'s angle across it
            axis = 0.5 * np.arctan2(2 * (du * dv).mean(), (du * du).mean() - (dv * dv).mean())
            angle = -(axis + np.pi / 2)
            r, c = np.mgrid[0:image.shape[0], 0:image.shape[1]]
            out = np.zeros((4,) + image.shape, np.float32)
            out[0] = np.exp(-((c - cu) ** 2 + (r - cv) ** 2) / (2 * 6.0 ** 2))
            out[1], out[2] = np.cos(2 * angle), np.sin(2 * angle)
            out[3] = 0.3 * out[0]
            outputs.append(out)
        return np.stack(outputs)


def bar_scene(angle_rad, length_px=160, thickness_px=30, table_m=0.70, top_m=0.65):
    """A 640 x 480 table with a bar lying along ``angle_rad`` (direction()'s convention)
    through the image centre."""
    depth = np.full((480, 640), table_m, np.float32)
    along = direction(angle_rad)
    across = np.array([-along[1], along[0]])
    centre = np.array([320.0, 240.0])
    corners = [centre + sa * along * length_px / 2 + sc * across * thickness_px / 2
               for sa, sc in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    mask = np.zeros(depth.shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(np.array(corners) * 16).astype(np.int32), 1, shift=4)
    depth[mask > 0] = top_m
    return depth


def test_mirroring_an_output_twice_gives_it_back():
    output = np.random.default_rng(0).normal(size=(2, 4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(mirror_output(mirror_output(output)), output)


def test_mirrored_output_negates_sin_and_flips_columns():
    output = np.random.default_rng(1).normal(size=(1, 4, 5, 6)).astype(np.float32)
    back = mirror_output(output)
    for channel, sign in zip(range(4), (1, 1, -1, 1)):
        np.testing.assert_array_equal(back[0, channel], sign * output[0, channel, :, ::-1])


def test_a_network_that_mirrors_loses_nothing_to_the_mirrored_view():
    depth = bar_scene(np.deg2rad(30.0))
    plain = GraspDetector(BarOracle()).detect(depth, INTRINSICS)
    both = GraspDetector(AveragedBackend([BarOracle()], mirror=True)).detect(depth, INTRINSICS)
    np.testing.assert_allclose(both.maps.score, plain.maps.score, atol=1e-5)
    best, best_plain = both.grasps_2d[0], plain.grasps_2d[0]
    assert (best.u, best.v) == pytest.approx((best_plain.u, best_plain.v), abs=0.5)
    # across the bar: 30 + 90 degrees
    assert angle_difference(best.angle, np.deg2rad(120.0)) < np.deg2rad(2.0)
    assert angle_difference(best_plain.angle, np.deg2rad(120.0)) < np.deg2rad(2.0)


def test_a_network_blind_to_mirroring_averages_its_angle_away():
    # the same 30 degree grasp everywhere whatever the input: its mirror image says -30, and
    # the mean of the two keeps cos 2phi and cancels sin 2phi
    out = np.zeros((4, 400, 400), np.float32)
    out[0] = 0.5
    out[1], out[2] = np.cos(np.deg2rad(60.0)), np.sin(np.deg2rad(60.0))
    mean = AveragedBackend([ConstantBackend(out)], mirror=True).predict(
        np.zeros((1, 1, 400, 400), np.float32))[0]
    np.testing.assert_allclose(mean[1], np.cos(np.deg2rad(60.0)), atol=1e-6)
    np.testing.assert_allclose(mean[2], 0.0, atol=1e-6)
    np.testing.assert_allclose(mean[0], 0.5, atol=1e-6)


def test_members_are_averaged_pass_by_pass():
    low, high = np.full((4, 4, 4), 0.2, np.float32), np.full((4, 4, 4), 0.6, np.float32)
    config = ModelConfig(input_size=4)
    averaged = AveragedBackend([ConstantBackend(low, config), ConstantBackend(high, config)])
    assert averaged.passes == 2
    np.testing.assert_allclose(averaged.predict(np.zeros((1, 1, 4, 4), np.float32)), 0.4,
                               atol=1e-6)
    assert AveragedBackend([ConstantBackend(low, config)] * 2, mirror=True).passes == 4


class CountingBackend(ConstantBackend):
    """Records the batch shape of every call and the warm-ups asked of it."""

    def __init__(self, output, config=None):
        super().__init__(output, config)
        self.shapes, self.warmups = [], 0

    def predict(self, batch):
        self.shapes.append(batch.shape)
        return super().predict(batch)

    def warmup(self, runs=2):
        self.warmups += 1


def test_the_mirrored_view_reaches_each_member_in_the_same_call():
    config = ModelConfig(input_size=4)
    members = [CountingBackend(np.zeros((4, 4, 4)), config) for _ in range(2)]
    averaged = AveragedBackend(members, mirror=True)
    averaged.predict(np.zeros((1, 1, 4, 4), np.float32))
    for member in members:
        assert member.shapes == [(2, 1, 4, 4)]  # the input and its mirror image, one call
    # warm-up runs the batch the members will get (a CUDA graph is captured per shape)
    averaged.warmup(runs=1)
    assert [member.shapes[-1] for member in members] == [(2, 1, 4, 4)] * 2
    assert [member.warmups for member in members] == [0, 0]


def test_one_call_for_both_views_gives_the_maps_of_two_calls(random_model_path):
    from grasp_fcn_ros.core.backends import create_backend

    backend = create_backend(random_model_path, 'torch', 'cpu', 'fp32', threads=1)
    size = backend.config.input_size
    rng = np.random.default_rng(3)
    batch = rng.normal(0.0, 0.05, (1, 1, size, size)).astype(np.float32)
    expected = 0.5 * (backend.predict(batch) + mirror_output(
        backend.predict(np.ascontiguousarray(batch[..., ::-1]))))
    got = AveragedBackend([backend], mirror=True).predict(batch)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_models_of_different_scales_are_refused():
    out = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(ModelError, match='share input size'):
        AveragedBackend([ConstantBackend(out, ModelConfig(input_size=4)),
                         ConstantBackend(out, ModelConfig(input_size=4,
                                                          metres_per_pixel=0.002))])
    with pytest.raises(ModelError, match='at least one'):
        AveragedBackend([])
