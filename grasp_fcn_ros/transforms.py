"""Moving grasp poses into another frame: a small lookup interface and the pose maths.

The maths is plain numpy. The tf2-backed lookup is built only when ``tf2_ros`` imports
(it is not on PyPI, so environments built from the ROS wheels lack it).
"""

from dataclasses import replace

import numpy as np

from .core.geometry import unit_quaternion
from .core.projection import quaternion_to_matrix

#: How long a lookup waits for a transform to arrive, seconds.
TF_TIMEOUT_S = 0.2


class TransformError(RuntimeError):
    """Raised when a transform is unavailable, or tf2 itself is."""


class TransformLookup:
    """Interface: where is ``source_frame`` in ``target_frame`` at a time?

    ``lookup`` returns the transform that maps points from the source frame into the target
    frame, ``p_target = R(q) p_source + t``, as ``(t, q)``: translation (3,) in metres and
    quaternion (4,) as (x, y, z, w).
    """

    def lookup(self, target_frame, source_frame, stamp):
        """:raises TransformError: when the transform is not available."""
        raise NotImplementedError


class Tf2TransformLookup(TransformLookup):
    """:class:`TransformLookup` backed by a tf2_ros Buffer and TransformListener.

    :param node: the rclpy node that subscribes to /tf and /tf_static.
    :param timeout_s: how long a lookup may wait for the transform.
    """

    def __init__(self, node, timeout_s=TF_TIMEOUT_S):
        import tf2_ros

        self._tf2_ros = tf2_ros
        self.timeout_s = float(timeout_s)
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    def lookup(self, target_frame, source_frame, stamp):
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            transform = self.buffer.lookup_transform(
                target_frame, source_frame, Time.from_msg(stamp),
                timeout=Duration(nanoseconds=int(self.timeout_s * 1e9)))
        except self._tf2_ros.TransformException as exc:
            raise TransformError(
                f"no transform from '{source_frame}' to '{target_frame}' at "
                f'{stamp.sec}.{stamp.nanosec:09d}: {exc}') from exc
        t, r = transform.transform.translation, transform.transform.rotation
        return np.array([t.x, t.y, t.z]), np.array([r.x, r.y, r.z, r.w])


def create_tf_lookup(node, timeout_s=TF_TIMEOUT_S):
    """Build the tf2-backed lookup for a node.

    :raises TransformError: with an explanation when tf2_ros is not installed.
    """
    try:
        import tf2_ros  # noqa: F401
    except ImportError as exc:
        raise TransformError(
            'output_frame needs tf2_ros, which is not installed in this environment '
            '(source a ROS 2 installation that has it, or leave output_frame empty to '
            'publish in the camera frame)') from exc
    return Tf2TransformLookup(node, timeout_s)


def quaternion_multiply(a, b):
    """Hamilton product ``a * b`` of quaternions (x, y, z, w): rotation b, then a."""
    x1, y1, z1, w1 = np.asarray(a, dtype=np.float64)
    x2, y2, z2, w2 = np.asarray(b, dtype=np.float64)
    return np.array([
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
    ])


def transform_pose(translation, quaternion, position, orientation):
    """Apply the transform ``(translation, quaternion)`` to a pose.

    :param translation: (3,) metres, the transform's translation.
    :param quaternion: (4,) (x, y, z, w), the transform's rotation.
    :param position: (3,) metres, the pose's position in the source frame.
    :param orientation: (4,) (x, y, z, w), the pose's orientation in the source frame.
    :returns: ``(position, orientation)`` in the target frame; the quaternion is unit length
        with w >= 0.
    """
    rotation = quaternion_to_matrix(quaternion)
    new_position = rotation @ np.asarray(position, dtype=np.float64) + np.asarray(
        translation, dtype=np.float64)
    new_orientation = quaternion_multiply(unit_quaternion(quaternion),
                                          unit_quaternion(orientation))
    return new_position, unit_quaternion(new_orientation)


def transform_grasps(grasps, translation, quaternion):
    """Copies of grasps moved by the transform (width, quality, angle and pixels unchanged).

    :param grasps: list of :class:`~grasp_fcn_ros.core.projection.Grasp3D`.
    :returns: a new list of Grasp3D.
    """
    moved = []
    for grasp in grasps:
        position, orientation = transform_pose(translation, quaternion, grasp.position_m,
                                               grasp.quaternion)
        jaw_axis = grasp.jaw_axis
        if jaw_axis is not None:
            jaw_axis = quaternion_to_matrix(quaternion) @ np.asarray(jaw_axis, np.float64)
        moved.append(replace(grasp, position_m=position, quaternion=orientation,
                             jaw_axis=jaw_axis))
    return moved
