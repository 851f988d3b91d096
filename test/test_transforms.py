"""Frame changes of grasp poses, with a fake transform lookup (no tf2 needed)."""

import sys

import numpy as np
import pytest

from grasp_fcn_ros.core.projection import Grasp3D, matrix_to_quaternion, quaternion_to_matrix
from grasp_fcn_ros.transforms import (
    create_tf_lookup,
    quaternion_multiply,
    transform_grasps,
    transform_pose,
    TransformError,
    TransformLookup,
)

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def rot_z(angle):
    return np.array([0.0, 0.0, np.sin(angle / 2), np.cos(angle / 2)])


def rot_x(angle):
    return np.array([np.sin(angle / 2), 0.0, 0.0, np.cos(angle / 2)])


class FakeLookup(TransformLookup):
    """Transforms from a dict (target, source) -> (translation, quaternion)."""

    def __init__(self, transforms):
        self.transforms = transforms
        self.calls = []

    def lookup(self, target_frame, source_frame, stamp):
        self.calls.append((target_frame, source_frame, stamp))
        try:
            return self.transforms[(target_frame, source_frame)]
        except KeyError:
            raise TransformError(f'no transform {source_frame} -> {target_frame}') from None


def test_translation_only():
    position, orientation = transform_pose([1.0, 2.0, 3.0], IDENTITY, [0.1, 0.2, 0.3], rot_x(0.4))
    np.testing.assert_allclose(position, [1.1, 2.2, 3.3])
    np.testing.assert_allclose(orientation, rot_x(0.4))


def test_quarter_turn_about_z_moves_x_to_y():
    position, orientation = transform_pose([0.0, 0.0, 1.0], rot_z(np.pi / 2), [1.0, 0.0, 0.0],
                                           IDENTITY)
    np.testing.assert_allclose(position, [0.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(orientation)[:, 0], [0.0, 1.0, 0.0],
                               atol=1e-12)


def test_camera_optical_frame_to_base():
    # A camera looking straight down from 1 m: optical Z (forward) = base -Z, optical X = base X.
    camera_in_base = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    q = matrix_to_quaternion(camera_in_base)
    grasp_rotation = quaternion_to_matrix(rot_z(0.3))
    position, orientation = transform_pose([0.5, 0.0, 1.0], q, [0.1, 0.2, 0.7],
                                           matrix_to_quaternion(grasp_rotation))
    np.testing.assert_allclose(position, [0.6, -0.2, 0.3], atol=1e-12)
    rotation = quaternion_to_matrix(orientation)
    np.testing.assert_allclose(rotation, camera_in_base @ grasp_rotation, atol=1e-12)
    np.testing.assert_allclose(rotation[:, 2], [0.0, 0.0, -1.0], atol=1e-12)  # approach down
    assert orientation[3] >= 0 and np.isclose(np.linalg.norm(orientation), 1.0)


def test_composition_matches_matrices():
    rng = np.random.default_rng(4)
    for _ in range(20):
        q, o = rng.normal(size=4), rng.normal(size=4)
        t, p = rng.normal(size=3), rng.normal(size=3)
        position, orientation = transform_pose(t, q, p, o)
        np.testing.assert_allclose(position, quaternion_to_matrix(q) @ p + t, atol=1e-12)
        np.testing.assert_allclose(quaternion_to_matrix(orientation),
                                   quaternion_to_matrix(q) @ quaternion_to_matrix(o), atol=1e-12)


def test_quaternion_multiply_identity_and_inverse():
    q = rot_x(0.7)
    np.testing.assert_allclose(quaternion_multiply(q, IDENTITY), q)
    inverse = q * [-1, -1, -1, 1]
    np.testing.assert_allclose(quaternion_multiply(q, inverse), IDENTITY, atol=1e-12)


def test_transform_grasps_with_fake_lookup_keeps_grasp_data():
    grasp = Grasp3D(position_m=np.array([0.0, 0.0, 0.5]), quaternion=IDENTITY.copy(),
                    width_m=0.04, quality=0.8, angle=0.2, u=320.0, v=240.0, depth_m=0.5)
    lookup = FakeLookup({('base_link', 'camera'): (np.array([0.0, 0.0, 1.0]), rot_x(np.pi))})
    translation, rotation = lookup.lookup('base_link', 'camera', None)
    (moved,) = transform_grasps([grasp], translation, rotation)
    np.testing.assert_allclose(moved.position_m, [0.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(moved.quaternion)[:, 2], [0, 0, -1],
                               atol=1e-12)
    assert (moved.width_m, moved.quality, moved.angle, moved.u, moved.v) == (
        0.04, 0.8, 0.2, 320.0, 240.0)
    np.testing.assert_array_equal(grasp.position_m, [0.0, 0.0, 0.5])  # original untouched
    with pytest.raises(TransformError):
        lookup.lookup('map', 'camera', None)


def test_interface_lookup_is_abstract():
    with pytest.raises(NotImplementedError):
        TransformLookup().lookup('a', 'b', None)


def test_without_tf2_ros_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tf2_ros', None)  # import tf2_ros now raises ImportError
    with pytest.raises(TransformError, match='tf2_ros'):
        create_tf_lookup(node=None)
