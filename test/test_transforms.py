"""Frame changes of grasp poses, with a fake transform lookup (no tf2 needed)."""

import sys

import numpy as np
import pytest

from grasp_fcn_ros.core.projection import Grasp3D
from grasp_fcn_ros.transforms import (
    create_tf_lookup,
    quaternion_multiply,
    transform_grasps,
    transform_pose,
    TransformError,
    TransformLookup,
)

from scenes import FakeLookup

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def rot_z(angle):
    return np.array([0.0, 0.0, np.sin(angle / 2), np.cos(angle / 2)])


def rot_x(angle):
    return np.array([np.sin(angle / 2), 0.0, 0.0, np.cos(angle / 2)])


def axis_angle_quaternion(axis, angle):
    """(x, y, z, w) of a rotation by ``angle`` about ``axis``: the textbook definition."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.append(axis * np.sin(angle / 2), np.cos(angle / 2))


def rodrigues(axis, angle):
    """Rotation matrix by Rodrigues' formula, I + sin(a) K + (1 - cos(a)) K^2."""
    kx, ky, kz = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0.0, -kz, ky], [kz, 0.0, -kx], [-ky, kx, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def rotate(quaternion, vector):
    """A vector rotated by a unit quaternion: v + 2w (q x v) + 2 q x (q x v)."""
    q, w = np.asarray(quaternion[:3], dtype=np.float64), float(quaternion[3])
    v = np.asarray(vector, dtype=np.float64)
    return v + 2 * w * np.cross(q, v) + 2 * np.cross(q, np.cross(q, v))


def test_translation_only():
    position, orientation = transform_pose([1.0, 2.0, 3.0], IDENTITY, [0.1, 0.2, 0.3], rot_x(0.4))
    np.testing.assert_allclose(position, [1.1, 2.2, 3.3])
    np.testing.assert_allclose(orientation, rot_x(0.4))


def test_quarter_turn_about_z_moves_x_to_y():
    position, orientation = transform_pose([0.0, 0.0, 1.0], rot_z(np.pi / 2), [1.0, 0.0, 0.0],
                                           IDENTITY)
    np.testing.assert_allclose(position, [0.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(orientation, rot_z(np.pi / 2), atol=1e-12)
    np.testing.assert_allclose(rotate(orientation, [1, 0, 0]), [0.0, 1.0, 0.0], atol=1e-12)


def test_camera_optical_frame_to_base():
    # A camera looking straight down from 1 m: optical Z (forward) = base -Z, optical X = base X.
    # That is a half turn about X: q = (1, 0, 0, 0).
    c, s = np.cos(0.15), np.sin(0.15)
    position, orientation = transform_pose([0.5, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0],
                                           [0.1, 0.2, 0.7], [0.0, 0.0, s, c])
    np.testing.assert_allclose(position, [0.6, -0.2, 0.3], atol=1e-12)
    # (1, 0, 0, 0) * (0, 0, s, c) = (c, -s, 0, 0): the grasp's X turned by 0.3 rad about
    # base -Z, its approach (Z) pointing down
    np.testing.assert_allclose(orientation, [c, -s, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(rotate(orientation, [0, 0, 1]), [0.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(rotate(orientation, [1, 0, 0]),
                               [np.cos(0.3), -np.sin(0.3), 0.0], atol=1e-12)


def test_composition_matches_rodrigues_matrices():
    rng = np.random.default_rng(4)
    for _ in range(20):
        axis_t, axis_o = rng.normal(size=3), rng.normal(size=3)
        angle_t, angle_o = rng.uniform(-np.pi, np.pi, size=2)
        t, p = rng.normal(size=3), rng.normal(size=3)
        scale = rng.uniform(0.5, 2.0)  # quaternions of any length are accepted
        position, orientation = transform_pose(
            t, scale * axis_angle_quaternion(axis_t, angle_t), p,
            -axis_angle_quaternion(axis_o, angle_o))
        r_t, r_o = rodrigues(axis_t, angle_t), rodrigues(axis_o, angle_o)
        np.testing.assert_allclose(position, r_t @ p + t, atol=1e-12)
        assert np.linalg.norm(orientation) == pytest.approx(1.0) and orientation[3] >= 0
        rotation = np.stack([rotate(orientation, e) for e in np.eye(3)], axis=1)
        np.testing.assert_allclose(rotation, r_t @ r_o, atol=1e-12)


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
    np.testing.assert_allclose(moved.quaternion, [1.0, 0.0, 0.0, 0.0], atol=1e-12)
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
