"""From a detected grasp pose to the tool pose of a real parallel-jaw gripper.

A detected grasp (:class:`~grasp_fcn_ros.core.projection.Grasp3D`) sits on the object surface
with +X along the jaw closing direction and +Z along the camera ray. A gripper has its own
tool frame convention (a Franka Hand closes along Y and approaches along Z), an opening range,
and a tool centre point that should sit some way into the object rather than on its surface.
:func:`apply_gripper` turns detected grasps into tool poses a planner can use directly.

Approach modes:

- ``camera_ray``: the approach is the camera ray through the grasp centre.
- ``top_down``: the approach is a fixed direction ``down`` (the node passes -Z of
  ``output_frame``, or the camera's optical axis when grasps stay in the camera frame); the
  closing direction is the line between the two jaw contact points (``Grasp3D.jaw_axis``; the
  pose's X when unknown) laid into the plane normal to it.
"""

from dataclasses import dataclass, replace

import numpy as np

from .projection import matrix_to_quaternion

#: Axis names of a tool frame convention -> unit vector in the tool frame.
AXES = {
    'x': (1.0, 0.0, 0.0), '-x': (-1.0, 0.0, 0.0),
    'y': (0.0, 1.0, 0.0), '-y': (0.0, -1.0, 0.0),
    'z': (0.0, 0.0, 1.0), '-z': (0.0, 0.0, -1.0),
}
APPROACH_MODES = ('camera_ray', 'top_down')
#: A closing direction shorter than this after removing its component along the approach is
#: taken as parallel to the approach (no information left about the closing direction).
_PARALLEL_EPS = 1e-6


@dataclass(frozen=True)
class GripperConfig:
    """A parallel-jaw gripper and where its tool frame goes.

    :param min_opening_m: smallest opening, metres; narrower grasps are dropped.
    :param max_opening_m: largest opening, metres; wider grasps are dropped.
    :param depth_offset_m: tool centre point moved this far along the approach from the object
        surface, metres (positive = into the object).
    :param closing_axis: tool axis along which the jaws close, one of :data:`AXES`.
    :param approach_axis: tool axis pointing from the gripper towards the object.
    :param approach_mode: ``camera_ray`` or ``top_down`` (see the module docstring).
    """

    min_opening_m: float = 0.0
    max_opening_m: float = 1.0
    depth_offset_m: float = 0.0
    closing_axis: str = 'x'
    approach_axis: str = 'z'
    approach_mode: str = 'camera_ray'


def validate_gripper(config):
    """Check a :class:`GripperConfig`.

    :returns: None when usable, else the reason.
    """
    for name in ('closing_axis', 'approach_axis'):
        if getattr(config, name) not in AXES:
            return (f"unknown {name} '{getattr(config, name)}' (expected one of "
                    f"{', '.join(AXES)})")
    if config.closing_axis[-1] == config.approach_axis[-1]:
        return (f'the closing axis ({config.closing_axis}) and the approach axis '
                f'({config.approach_axis}) must be different axes')
    if config.approach_mode not in APPROACH_MODES:
        return (f"unknown approach_mode '{config.approach_mode}' (expected one of "
                f"{', '.join(APPROACH_MODES)})")
    if not config.min_opening_m < config.max_opening_m:
        return (f'the minimum opening ({config.min_opening_m} m) must be smaller than the '
                f'maximum opening ({config.max_opening_m} m)')
    return None


def axis_matrix(closing_axis, approach_axis):
    """Rotation taking the detection convention (X closing, Z approach) to a tool convention.

    :param closing_axis: tool closing axis, one of :data:`AXES`.
    :param approach_axis: tool approach axis, one of :data:`AXES`.
    :returns: 3x3 matrix ``M`` with ``M @ (1, 0, 0)`` the closing axis and ``M @ (0, 0, 1)``
        the approach axis, in tool coordinates (right-handed, det +1).
    """
    closing = np.array(AXES[closing_axis])
    approach = np.array(AXES[approach_axis])
    return np.stack([closing, np.cross(approach, closing), approach], axis=1)


def tool_rotation(closing, approach, closing_axis='x', approach_axis='z'):
    """Orientation of the tool frame from the closing and approach directions.

    :param closing: (3,) jaw closing direction in the output frame (any length > 0).
    :param approach: (3,) approach direction in the output frame, orthogonal to ``closing``.
    :param closing_axis: tool axis along ``closing``.
    :param approach_axis: tool axis along ``approach``.
    :returns: 3x3 rotation whose columns are the tool's X, Y, Z in the output frame.
    """
    x = np.asarray(closing, dtype=np.float64)
    z = np.asarray(approach, dtype=np.float64)
    x, z = x / np.linalg.norm(x), z / np.linalg.norm(z)
    detection = np.stack([x, np.cross(z, x), z], axis=1)  # X closing, Z approach
    return detection @ axis_matrix(closing_axis, approach_axis).T


def _perpendicular(vector):
    """Any unit vector orthogonal to ``vector``."""
    helper = np.eye(3)[int(np.argmin(np.abs(vector)))]
    other = np.cross(vector, helper)
    return other / np.linalg.norm(other)


def apply_gripper(grasps, config, down=(0.0, 0.0, -1.0)):
    """Tool poses of detected grasps: opening range, approach mode, depth offset, convention.

    Grasps whose width lies outside ``[min_opening_m, max_opening_m]`` are dropped (not
    clipped: a grasp wider than the gripper opens cannot be executed, one narrower than it
    closes would not hold); the order of the others is kept. Width, quality, angle and pixels
    are unchanged.

    :param grasps: list of :class:`~grasp_fcn_ros.core.projection.Grasp3D` in the convention
        of the detector (X closing, Z along the camera ray), in the output frame.
    :param config: a :class:`GripperConfig`.
    :param down: (3,) approach direction of ``top_down`` in the grasps' frame.
    :returns: a new list of Grasp3D.
    """
    down = np.asarray(down, dtype=np.float64)
    down = down / np.linalg.norm(down)
    out = []
    for grasp in grasps:
        if not config.min_opening_m <= grasp.width_m <= config.max_opening_m:
            continue
        rotation = grasp.rotation
        closing, approach = rotation[:, 0], rotation[:, 2]
        if config.approach_mode == 'top_down':
            approach = down
            if grasp.jaw_axis is not None:
                closing = np.asarray(grasp.jaw_axis, dtype=np.float64)
            closing = closing - np.dot(closing, approach) * approach
            if np.linalg.norm(closing) < _PARALLEL_EPS:
                closing = _perpendicular(approach)
        position = np.asarray(grasp.position_m, dtype=np.float64) + (
            config.depth_offset_m * approach / np.linalg.norm(approach))
        quaternion = matrix_to_quaternion(
            tool_rotation(closing, approach, config.closing_axis, config.approach_axis))
        out.append(replace(grasp, position_m=position, quaternion=quaternion))
    return out
