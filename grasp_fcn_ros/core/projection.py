"""From a 2-D grasp, the depth image and the intrinsics to a 3-D grasp pose.

Pose convention: origin at the grasp centre on the object surface; +Z along the camera ray
through the centre (the approach, into the scene); +X along the jaw closing direction; +Y =
Z x X. Quaternions are (x, y, z, w).
"""

from dataclasses import dataclass

import numpy as np

from .depth import invalid_mask, median
from .grasp import direction


@dataclass
class Grasp3D:
    """A grasp pose in the camera's optical frame.

    :param position_m: (3,) grasp centre, metres.
    :param quaternion: (4,) orientation (x, y, z, w).
    :param width_m: gripper opening, metres.
    :param quality: grasp quality in [0, 1].
    :param angle: in-image angle, radians.
    :param u: source-image column of the centre, pixels.
    :param v: source-image row of the centre, pixels.
    :param depth_m: depth used for the centre, metres.
    :param jaw_axis: (3,) unit vector from one jaw contact point to the other (both at the
        centre's depth), or None when unknown; not orthogonal to the camera ray in general.
    """

    position_m: np.ndarray
    quaternion: np.ndarray
    width_m: float
    quality: float
    angle: float
    u: float
    v: float
    depth_m: float
    jaw_axis: np.ndarray = None

    @property
    def rotation(self):
        """3x3 rotation matrix of the pose."""
        return quaternion_to_matrix(self.quaternion)


def robust_depth(depth_m, u, v, radius_px=2, min_depth_m=0.0, max_depth_m=np.inf):
    """Median of the valid depths in a square window around a pixel.

    :param depth_m: source depth image, metres (invalid pixels 0 or NaN).
    :param u: column, pixels.
    :param v: row, pixels.
    :param radius_px: half side of the window, pixels.
    :returns: depth in metres, or None when the window holds no valid pixel.
    """
    h, w = depth_m.shape
    if not (np.isfinite(u) and np.isfinite(v)):
        return None
    # pixel k covers [k - 0.5, k + 0.5): round halves up, not to even as round() does
    col, row = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
    if not (0 <= col < w and 0 <= row < h):
        return None
    r = max(int(radius_px), 0)
    window = depth_m[max(row - r, 0):row + r + 1, max(col - r, 0):col + r + 1]
    values = window[~invalid_mask(window, min_depth_m, max_depth_m)]
    if values.size == 0:
        return None
    return float(median(values))


def matrix_to_quaternion(rotation):
    """Quaternion (x, y, z, w) of a 3x3 rotation matrix, with w >= 0."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quaternion_to_matrix(quaternion):
    """3x3 rotation matrix of a quaternion (x, y, z, w)."""
    x, y, z, w = np.asarray(quaternion, dtype=np.float64) / np.linalg.norm(quaternion)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _frame_from_rays(centre_ray, along_ray):
    """Rotation (columns X, Y, Z) of a grasp from the camera ray through its centre pixel and
    the ray through the pixel one step along its in-image closing direction (both at depth 1).

    Z is the unit ray through the centre; X is the closing direction carried onto the plane
    normal to Z; Y = Z x X.
    """
    z_axis = centre_ray / np.linalg.norm(centre_ray)
    along = along_ray - centre_ray
    x_axis = along - np.dot(along, z_axis) * z_axis
    x_axis /= np.linalg.norm(x_axis)
    # Z x X, written out (np.cross costs more than the rest of the frame on 3-vectors)
    y_axis = np.array([z_axis[1] * x_axis[2] - z_axis[2] * x_axis[1],
                       z_axis[2] * x_axis[0] - z_axis[0] * x_axis[2],
                       z_axis[0] * x_axis[1] - z_axis[1] * x_axis[0]])
    return np.stack([x_axis, y_axis, z_axis], axis=1)


def project_grasp(grasp, depth_m, intrinsics, depth_radius_px=2, min_depth_m=0.0,
                  max_depth_m=np.inf):
    """Lift a 2-D grasp (source pixels) to a 3-D pose in the camera's optical frame.

    The centre's depth is :func:`robust_depth` around it; the width in metres is the distance
    between the two jaw points back-projected at that depth.

    :param grasp: a :class:`~grasp_fcn_ros.core.grasp.Grasp2D` in source pixels.
    :param depth_m: source depth image, metres.
    :param intrinsics: a :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`.
    :returns: a :class:`Grasp3D`, or None when the centre has no valid depth or the pose
        is not finite.
    """
    z = robust_depth(depth_m, grasp.u, grasp.v, depth_radius_px, min_depth_m, max_depth_m)
    if z is None:
        return None
    du, dv = direction(grasp.angle)
    half_u, half_v = du * grasp.width_px / 2, dv * grasp.width_px / 2
    u, v = grasp.u, grasp.v
    # one call for the centre and the jaws at the centre's depth, and the two rays of the
    # pose's frame at depth 1
    points = intrinsics.back_project([u, u - half_u, u + half_u, u, u + du],
                                     [v, v - half_v, v + half_v, v, v + dv],
                                     [z, z, z, 1.0, 1.0])
    position, jaws = points[0], points[1:3]
    width_m = float(np.linalg.norm(jaws[1] - jaws[0]))
    rotation = _frame_from_rays(points[3], points[4])
    quaternion = matrix_to_quaternion(rotation)
    if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quaternion))
            and np.isfinite(width_m)):
        return None  # overflow with extreme intrinsics or width: no usable pose
    return Grasp3D(position_m=position, quaternion=quaternion,
                   width_m=width_m, quality=float(grasp.quality), angle=float(grasp.angle),
                   u=float(grasp.u), v=float(grasp.v), depth_m=z,
                   jaw_axis=(jaws[1] - jaws[0]) / width_m if width_m > 0 else None)
