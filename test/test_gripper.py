"""The tool pose of a gripper from a detected grasp, against poses worked out by hand."""

import numpy as np
import pytest

from grasp_fcn_ros.core.gripper import (
    apply_gripper,
    axis_matrix,
    GripperConfig,
    tool_rotation,
    validate_gripper,
)
from grasp_fcn_ros.core.projection import Grasp3D, matrix_to_quaternion, quaternion_to_matrix

S = np.sqrt(0.5)


def detected(rotation, position=(0.1, -0.05, 0.7), width_m=0.05):
    """A detected grasp with the given orientation (columns: X closing, Y, Z approach)."""
    return Grasp3D(position_m=np.array(position, dtype=np.float64),
                   quaternion=matrix_to_quaternion(np.asarray(rotation, dtype=np.float64)),
                   width_m=width_m, quality=0.9, angle=0.3, u=400.0, v=200.0, depth_m=0.7)


#: A grasp seen straight along the optical axis, jaws closing along the camera's +X:
#: the detection frame is the camera frame itself.
STRAIGHT = np.eye(3)
#: An oblique camera ray, (0, -1, 1) / sqrt 2, jaws closing along +X.
OBLIQUE = np.stack([[1.0, 0.0, 0.0], [0.0, S, S], [0.0, -S, S]], axis=1)


def rotation_of(grasp):
    return quaternion_to_matrix(grasp.quaternion)


def test_axis_matrix_is_a_rotation_for_every_convention():
    for closing in ('x', '-x', 'y', '-y', 'z', '-z'):
        for approach in ('x', '-x', 'y', '-y', 'z', '-z'):
            if closing[-1] == approach[-1]:
                continue
            m = axis_matrix(closing, approach)
            np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
            assert np.isclose(np.linalg.det(m), 1.0)


def test_default_convention_keeps_the_detected_pose():
    grasp = detected(OBLIQUE)
    (tool,) = apply_gripper([grasp], GripperConfig())
    np.testing.assert_allclose(rotation_of(tool), OBLIQUE, atol=1e-9)
    np.testing.assert_allclose(tool.position_m, grasp.position_m)


def test_franka_convention_camera_ray_with_depth_offset():
    """Franka Hand: closes along Y, approaches along Z; X = Y x Z."""
    grasp = detected(OBLIQUE)
    config = GripperConfig(closing_axis='y', approach_axis='z', depth_offset_m=0.02)
    (tool,) = apply_gripper([grasp], config)
    r = rotation_of(tool)
    closing, approach = np.array([1.0, 0.0, 0.0]), np.array([0.0, -S, S])
    np.testing.assert_allclose(r[:, 1], closing, atol=1e-9)  # Y closes
    np.testing.assert_allclose(r[:, 2], approach, atol=1e-9)  # Z approaches
    np.testing.assert_allclose(r[:, 0], [0.0, -S, -S], atol=1e-9)  # Y x Z
    np.testing.assert_allclose(tool.position_m, [0.1, -0.05 - 0.02 * S, 0.7 + 0.02 * S])
    assert (tool.width_m, tool.quality, tool.angle, tool.u, tool.v) == (
        grasp.width_m, grasp.quality, grasp.angle, grasp.u, grasp.v)


def test_robotiq_like_convention_approach_along_x():
    """Closing along -Y, approaching along +X: Z = X x Y completes it."""
    r = tool_rotation([1.0, 0.0, 0.0], [0.0, -S, S], closing_axis='-y', approach_axis='x')
    np.testing.assert_allclose(r[:, 0], [0.0, -S, S], atol=1e-9)
    np.testing.assert_allclose(r[:, 1], [-1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(r[:, 2], np.cross(r[:, 0], r[:, 1]), atol=1e-9)
    np.testing.assert_allclose(r[:, 2], [0.0, -S, -S], atol=1e-9)


def test_top_down_in_an_output_frame_default_and_franka():
    # a grasp already moved into base_link: approach tilted, closing direction tilted too
    rotation = np.stack([[S, 0.0, S], [0.0, 1.0, 0.0], [-S, 0.0, S]], axis=1)
    grasp = detected(rotation, position=(0.5, 0.0, 0.1))
    default = apply_gripper([grasp], GripperConfig(approach_mode='top_down',
                                                   depth_offset_m=0.01))[0]
    r = rotation_of(default)
    # approach straight down (-Z of the frame); closing = (S, 0, S) laid flat = +X
    np.testing.assert_allclose(r[:, 2], [0.0, 0.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(r[:, 0], [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(r[:, 1], [0.0, -1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(default.position_m, [0.5, 0.0, 0.09])

    franka = apply_gripper([grasp], GripperConfig(approach_mode='top_down', closing_axis='y',
                                                  approach_axis='z'))[0]
    r = rotation_of(franka)
    np.testing.assert_allclose(r[:, 1], [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(r[:, 2], [0.0, 0.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(r[:, 0], [0.0, 1.0, 0.0], atol=1e-9)  # Y x Z
    np.testing.assert_allclose(franka.position_m, [0.5, 0.0, 0.1])


def test_top_down_along_the_optical_axis():
    grasp = detected(OBLIQUE)
    (tool,) = apply_gripper([grasp], GripperConfig(approach_mode='top_down'),
                            down=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(rotation_of(tool), STRAIGHT, atol=1e-9)


def test_top_down_closes_along_the_line_between_the_jaws():
    # an oblique camera ray: the pose's X is normal to the ray, the jaws lie at equal depth
    grasp = detected(OBLIQUE)
    grasp.jaw_axis = np.array([0.8, 0.6, 0.0])
    (tool,) = apply_gripper([grasp], GripperConfig(approach_mode='top_down'),
                            down=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(rotation_of(tool)[:, 0], [0.8, 0.6, 0.0], atol=1e-9)


def test_top_down_with_closing_along_the_approach_still_gives_a_rotation():
    rotation = np.stack([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], axis=1)
    (tool,) = apply_gripper([detected(rotation)], GripperConfig(approach_mode='top_down'))
    r = rotation_of(tool)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(r[:, 2], [0.0, 0.0, -1.0], atol=1e-9)


def test_grasps_outside_the_opening_range_are_dropped_in_order():
    grasps = [detected(STRAIGHT, width_m=w) for w in (0.09, 0.05, 0.005, 0.08, 0.01)]
    kept = apply_gripper(grasps, GripperConfig(min_opening_m=0.01, max_opening_m=0.08))
    assert [g.width_m for g in kept] == [0.05, 0.08, 0.01]


@pytest.mark.parametrize('changes, words', [
    ({'closing_axis': 'y', 'approach_axis': '-y'}, 'must be different axes'),
    ({'closing_axis': 'w'}, "unknown closing_axis 'w'"),
    ({'approach_mode': 'sideways'}, "unknown approach_mode 'sideways'"),
    ({'min_opening_m': 0.1, 'max_opening_m': 0.08}, 'must be smaller than the maximum'),
])
def test_unusable_gripper_settings_have_a_reason(changes, words):
    assert validate_gripper(GripperConfig()) is None
    reason = validate_gripper(GripperConfig(**changes))
    assert reason and words in reason
