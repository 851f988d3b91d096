import numpy as np
import pytest

from grasp_fcn_ros.core.geometry import CameraIntrinsics
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.projection import (
    matrix_to_quaternion,
    project_grasp,
    quaternion_to_matrix,
    robust_depth,
)

from scenes import box_on_plane, INTRINSICS


def test_centre_of_box_back_projects_by_hand():
    depth = box_on_plane(box=(300, 220, 60, 40))  # box top at 0.65 m
    grasp = Grasp2D(u=330.0, v=240.0, angle=0.0, width_px=58.5)
    pose = project_grasp(grasp, depth, INTRINSICS)
    np.testing.assert_allclose(pose.position_m, [10 * 0.65 / 585, 0.0, 0.65], atol=1e-6)
    # 58.5 px at 0.65 m with f = 585 px
    assert pose.width_m == pytest.approx(58.5 * 0.65 / 585, rel=1e-6)
    assert pose.depth_m == pytest.approx(0.65, abs=1e-6)


def test_axes_follow_the_convention_on_the_optical_axis():
    depth = np.full((480, 640), 1.0, np.float32)
    cam = CameraIntrinsics(500.0, 500.0, 320.0, 240.0)
    # angle 0: jaws close along +u (camera +x); angle 90 deg: along -v (camera -y)
    r0 = project_grasp(Grasp2D(320, 240, 0.0, 20), depth, cam).rotation
    np.testing.assert_allclose(r0, np.eye(3), atol=1e-9)
    r90 = project_grasp(Grasp2D(320, 240, np.pi / 2, 20), depth, cam).rotation
    np.testing.assert_allclose(r90[:, 0], [0, -1, 0], atol=1e-9)
    np.testing.assert_allclose(r90[:, 2], [0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(r90[:, 1], np.cross(r90[:, 2], r90[:, 0]), atol=1e-9)


def test_off_axis_pose_points_along_the_ray_and_is_orthonormal():
    depth = np.full((480, 640), 0.8, np.float32)
    pose = project_grasp(Grasp2D(600, 50, 0.7, 30), depth, INTRINSICS)
    r = pose.rotation
    ray = INTRINSICS.back_project(600, 50, 1.0)
    np.testing.assert_allclose(r[:, 2], ray / np.linalg.norm(ray), atol=1e-9)
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)
    assert np.linalg.norm(pose.quaternion) == pytest.approx(1.0)
    # the X axis projects back onto the in-image grasp direction
    tip = INTRINSICS.project(pose.position_m + 0.01 * r[:, 0])
    d = tip - [600, 50]
    assert np.arctan2(-d[1], d[0]) == pytest.approx(0.7, abs=1e-3)


def test_robust_depth_ignores_invalid_pixels():
    depth = np.full((20, 20), 0.5, np.float32)
    depth[9:12, 9:12] = np.nan
    depth[10, 10] = 0.0
    depth[8, 8] = 0.9
    assert robust_depth(depth, 10, 10, radius_px=2) == pytest.approx(0.5)
    assert robust_depth(depth, 10, 10, radius_px=1) is None
    assert robust_depth(depth, 25, 10) is None


def test_grasp_without_depth_is_dropped():
    depth = np.zeros((480, 640), np.float32)
    assert project_grasp(Grasp2D(100, 100, 0.0, 10), depth, INTRINSICS) is None


@pytest.mark.parametrize('seed', range(5))
def test_quaternion_round_trip(seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    q = q if q[3] >= 0 else -q
    np.testing.assert_allclose(matrix_to_quaternion(quaternion_to_matrix(q)), q, atol=1e-9)


def test_width_and_centre_on_a_distorted_image():
    # raw image, plumb_bob k1 = -0.2: the jaws are the distorted pixels of two points 0.1 m
    # apart at 1.5 m, x_d = x (1 + k1 r^2) computed by hand
    cam = CameraIntrinsics(500.0, 500.0, 320.0, 240.0, 640, 480, 'plumb_bob',
                           (-0.2, 0.0, 0.0, 0.0, 0.0))
    jaws_m = np.array([[0.25, -0.2, 1.5], [0.35, -0.2, 1.5]])
    x, y = jaws_m[:, 0] / 1.5, jaws_m[:, 1] / 1.5
    radial = 1 - 0.2 * (x * x + y * y)
    jaws_px = np.stack([500 * x * radial + 320, 500 * y * radial + 240], axis=1)
    du, dv = jaws_px[1] - jaws_px[0]
    grasp = Grasp2D(u=jaws_px[:, 0].mean(), v=jaws_px[:, 1].mean(), angle=np.arctan2(-dv, du),
                    width_px=np.hypot(du, dv))
    pose = project_grasp(grasp, np.full((480, 640), 1.5, np.float32), cam)
    assert pose.width_m == pytest.approx(0.1, abs=1e-6)
    assert grasp.width_px * 1.5 / 500 < 0.098  # a pinhole reading: about 3 % short
    np.testing.assert_allclose(cam.project(pose.position_m), [grasp.u, grasp.v], atol=1e-6)
    assert pose.depth_m == pytest.approx(1.5)
