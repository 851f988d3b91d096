"""Jaw clearance: can the open jaws of a parallel gripper go down beside what they grasp?

A grasp is executable only when the scene under each open jaw lies lower than the surface being
grasped: otherwise a jaw lands on the object's top face, on a neighbour, or on something in the
way. The check works in metres on the source depth image: each jaw's footprint
(``finger_width_m`` along the closing direction x ``jaw_depth_m`` across it), centred at
+-(opening / 2 + margin + finger_width / 2) from the grasp centre in the grasp's plane, is
projected into the image, and the median of the scene inside it must lie at least
``clearance_m`` below the grasp's centre, or half the centre's height above the support when
that is less (a flat object cannot clear more than its own height; the depth noise of a
Kinect-class camera, a few millimetres, would otherwise refuse every grasp on a flat object).

"Below" is measured along the normal of the support surface (the table or bin floor: the
dominant plane of the frame, :func:`fit_support_plane`, refitted on the table around each grasp,
:func:`local_support`), the way jaws descend onto a table whatever the camera's viewing angle; a
frame without a dominant plane falls back to depth along the camera's optical axis. (Along
the optical axis alone, an oblique camera sees the table in front of a flat object nearer than
the object's top and would refuse most good grasps.)
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .depth import invalid_mask, percentile

#: Percentile of the scene's heights under a footprint compared with the grasp's (the median:
#: robust to noisy pixels and to the object's own edge at the footprint's border), percent.
FOOTPRINT_PERCENTILE = 50.0
#: Largest share of the grasped surface's height above the support plane that the clearance
#: may ask for.
HEIGHT_FRACTION = 0.5
#: Support plane fit: pixel stride of the sampled points, RANSAC iterations, inlier distance
#: (metres) and the smallest share of sampled points the plane must hold.
PLANE_STRIDE_PX = 8
PLANE_ITERATIONS = 64
PLANE_INLIER_M = 0.015
PLANE_MIN_SHARE = 0.15
#: RANSAC hypotheses are scored on every this many sampled points (the final least-squares fit
#: uses all of them).
PLANE_SCORE_STRIDE = 2
#: Local support around a grasp (:func:`local_support`): the square window's half side as a
#: multiple of the jaws' reach (grasp centre to a jaw's outer edge), the pixel stride of its
#: samples, the fewest table points it needs, and the largest angle (degrees) its plane may make
#: with the frame's.
LOCAL_WINDOW_REACH = 1.5
LOCAL_STRIDE_PX = 3
LOCAL_MIN_POINTS = 30
LOCAL_MAX_TILT_DEG = 20.0


@dataclass(frozen=True)
class SupportPlane:
    """A plane ``normal . p = offset`` in the camera frame (metres), normal towards the camera.

    :param normal: (3,) unit normal.
    :param offset: metres.
    """

    normal: np.ndarray
    offset: float

    def height(self, points):
        """Signed height (metres) of camera-frame points (..., 3) above the plane."""
        return np.asarray(points, dtype=np.float64) @ self.normal - self.offset


def _sampled_points(depth_m, intrinsics, window, stride_px, min_depth_m, max_depth_m):
    """Camera-frame points (N, 3), metres, of every ``stride_px``-th pixel in each direction of
    an image window ``(row0, row1, col0, col1)`` that has valid depth and a finite point."""
    r0, r1, c0, c1 = window
    z = depth_m[r0:r1:stride_px, c0:c1:stride_px]
    valid = ~invalid_mask(z, min_depth_m, max_depth_m)
    rows, cols = np.nonzero(valid)
    points = intrinsics.back_project(cols * stride_px + c0, rows * stride_px + r0, z[valid])
    finite = np.isfinite(points)
    if finite.all():  # the usual case, one flat test instead of one per row
        return points
    return points[finite.all(axis=1)]


def fit_support_plane(depth_m, intrinsics, min_depth_m=0.0, max_depth_m=np.inf, seed=0):
    """The dominant plane of a depth frame (the table or bin floor), by RANSAC then least
    squares on its inliers; None when no plane holds ``PLANE_MIN_SHARE`` of the frame.

    Deterministic for a given frame (seeded sampling).
    """
    h, w = depth_m.shape
    points = _sampled_points(depth_m, intrinsics, (0, h, 0, w), PLANE_STRIDE_PX, min_depth_m,
                             max_depth_m)
    if len(points) < 3:
        return None
    # all hypotheses at once: three random points each (a repeated point gives no normal)
    rng = np.random.default_rng(seed)
    a, b, c = points[rng.integers(0, len(points), (3, PLANE_ITERATIONS))]
    normals = np.cross(b - a, c - a)
    norms = np.linalg.norm(normals, axis=1)
    usable = norms >= 1e-12
    if not usable.any():
        return None
    normals = normals[usable] / norms[usable, None]
    offsets = np.einsum('ij,ij->i', normals, a[usable])
    # hypotheses scored on every PLANE_SCORE_STRIDE-th point, in float32, as one matrix
    # product (points x hypotheses: 0.07 ms against 0.87 ms element-wise on one core)
    scored = points[::PLANE_SCORE_STRIDE].astype(np.float32)
    distances = scored @ normals.T.astype(np.float32)
    distances -= offsets.astype(np.float32)
    counts = np.count_nonzero(np.abs(distances, out=distances) < PLANE_INLIER_M, axis=0)
    best_index = int(np.argmax(counts))  # the first of equals, as a sequential search keeps
    if counts[best_index] < PLANE_MIN_SHARE * len(scored):
        return None
    normal, offset = normals[best_index], offsets[best_index]
    return _least_squares_plane(points[np.abs(points @ normal - offset) < PLANE_INLIER_M])


def _least_squares_plane(points):
    """The plane of least squared distances through camera-frame points (N, 3), its normal
    towards the camera."""
    centroid = points.mean(axis=0)
    centred = points - centroid
    # the normal is the axis of least spread (the 3 x 3 scatter matrix's eigenvector of the
    # smallest eigenvalue)
    normal = np.linalg.eigh(centred.T @ centred)[1][:, 0]
    if normal @ centroid > 0:  # towards the camera (the origin)
        normal = -normal
    return SupportPlane(normal, float(normal @ centroid))


def local_support(pose, depth_m, intrinsics, plane, reach_m, min_depth_m=0.0,
                  max_depth_m=np.inf):
    """The support surface under a grasp: the frame's plane refitted on the table around it.

    One plane per frame is a poor model of a real camera's table a few centimetres from an
    object: depth distortion bends it by centimetres across a Kinect frame, and a tilt of a few
    degrees in the fitted normal puts one jaw millimetres higher than the other, as much as a
    flat object's height. The table near the grasp is planar. The frame's plane selects it:
    the pixels in a square window around the grasp (half side ``LOCAL_WINDOW_REACH`` times
    ``reach_m``) that lie within ``PLANE_INLIER_M`` of the frame's plane and below the grasped
    surface; their least-squares plane is the local support.

    :param pose: the grasp (:class:`~grasp_fcn_ros.core.projection.Grasp3D`).
    :param plane: the frame's :class:`SupportPlane`.
    :param reach_m: distance from the grasp centre to a jaw's outer edge, metres.
    :returns: the local :class:`SupportPlane`, or ``plane`` when the window holds fewer than
        ``LOCAL_MIN_POINTS`` table points or their plane turns more than
        ``LOCAL_MAX_TILT_DEG`` from the frame's.
    """
    h, w = depth_m.shape
    if not (pose.depth_m > 0 and np.isfinite(pose.u) and np.isfinite(pose.v)):
        return plane
    half_px = LOCAL_WINDOW_REACH * reach_m * np.sqrt(intrinsics.fx * intrinsics.fy) / pose.depth_m
    if not np.isfinite(half_px):
        return plane
    half_px = int(np.ceil(half_px))
    col, row = int(np.floor(pose.u + 0.5)), int(np.floor(pose.v + 0.5))
    r0, r1 = max(row - half_px, 0), min(row + half_px + 1, h)
    c0, c1 = max(col - half_px, 0), min(col + half_px + 1, w)
    if r0 >= r1 or c0 >= c1:
        return plane
    points = _sampled_points(depth_m, intrinsics, (r0, r1, c0, c1), LOCAL_STRIDE_PX,
                             min_depth_m, max_depth_m)
    heights = plane.height(points)
    grasp_level = float(plane.height(pose.position_m))
    table = points[(np.abs(heights) < PLANE_INLIER_M) & (heights < grasp_level)]
    if len(table) < LOCAL_MIN_POINTS:
        return plane
    local = _least_squares_plane(table)
    if np.degrees(np.arccos(np.clip(local.normal @ plane.normal, -1.0, 1.0))) > (
            LOCAL_MAX_TILT_DEG):
        return plane
    return local


@dataclass(frozen=True)
class JawConfig:
    """The gripper's jaws as the clearance check sees them.

    :param enabled: run the check (grasps that fail are dropped).
    :param finger_width_m: thickness of a jaw along the closing direction, metres.
    :param jaw_depth_m: size of a jaw across the closing direction, metres.
    :param clearance_m: how much deeper than the grasp's depth the scene under each jaw must
        be, metres.
    :param margin_m: extra opening on each side beyond the predicted width, metres.
    """

    enabled: bool = True
    finger_width_m: float = 0.01
    jaw_depth_m: float = 0.02
    clearance_m: float = 0.01
    margin_m: float = 0.0


def jaw_footprints(pose, intrinsics, config):
    """The two jaws' footprints as pixel polygons.

    :param pose: a :class:`~grasp_fcn_ros.core.projection.Grasp3D` (camera frame; X closes,
        Y across the jaws, Z along the ray).
    :param intrinsics: the camera model of the depth image.
    :param config: a :class:`JawConfig`.
    :returns: float array (2, 4, 2) of (u, v) corners, one polygon per jaw.
    """
    rotation = pose.rotation
    x_axis, y_axis = rotation[:, 0], rotation[:, 1]
    offset = pose.width_m / 2 + config.margin_m + config.finger_width_m / 2
    half_x = x_axis * config.finger_width_m / 2
    half_y = y_axis * config.jaw_depth_m / 2
    polygons = []
    for side in (-1.0, 1.0):
        centre = pose.position_m + side * offset * x_axis
        corners = np.stack([centre - half_x - half_y, centre + half_x - half_y,
                            centre + half_x + half_y, centre - half_x + half_y])
        polygons.append(intrinsics.project(corners))
    return np.array(polygons)


def footprint_pixels(depth_m, polygon, min_depth_m=0.0, max_depth_m=np.inf):
    """The source pixels with valid depth whose centres lie inside a pixel polygon.

    A footprint thinner than a pixel still reads the pixel under its centre.

    :returns: ``(u, v, depth_m)`` arrays.
    """
    h, w = depth_m.shape
    polygon = np.asarray(polygon, dtype=np.float64)
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32))
    if not np.all(np.isfinite(polygon)):
        return empty
    lo = np.floor(polygon.min(axis=0)).astype(int)
    hi = np.ceil(polygon.max(axis=0)).astype(int) + 1
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x0 >= x1 or y0 >= y1:
        return empty
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift = 4
    points = np.round((polygon - [x0, y0]) * (1 << shift)).astype(np.int32)
    cv2.fillConvexPoly(mask, points, 1, lineType=cv2.LINE_8, shift=shift)
    centre = np.floor(polygon.mean(axis=0) + 0.5).astype(int) - [x0, y0]
    if 0 <= centre[0] < mask.shape[1] and 0 <= centre[1] < mask.shape[0]:
        mask[centre[1], centre[0]] = 1
    window = depth_m[y0:y1, x0:x1]
    rows, cols = np.nonzero((mask > 0) & ~invalid_mask(window, min_depth_m, max_depth_m))
    return cols + x0, rows + y0, window[rows, cols].astype(np.float32)


def jaws_clear(pose, depth_m, intrinsics, config, min_depth_m=0.0, max_depth_m=np.inf,
               plane=None, local=True):
    """Whether both jaws of a grasp can go down beside the grasped surface.

    A footprint without any valid depth (outside the image, or all holes) fails: the scene
    there cannot be checked.

    :param pose: a :class:`~grasp_fcn_ros.core.projection.Grasp3D`.
    :param depth_m: source depth image, metres.
    :param intrinsics: the camera model of the depth image.
    :param config: a :class:`JawConfig`.
    :param plane: the frame's :class:`SupportPlane` (heights along the normal of the table
        around the grasp, :func:`local_support`), or None (depth along the optical axis).
    :param local: refit the frame's plane on the table around the grasp
        (:func:`local_support`); False: the frame's plane as it is.
    :returns: ``(clear, reason)``: a bool and, when not clear, why.
    """
    clearance_m = config.clearance_m
    if plane is None:
        grasp_level = -pose.depth_m
    else:
        if local:
            reach_m = float(np.hypot(pose.width_m / 2 + config.margin_m + config.finger_width_m,
                                     config.jaw_depth_m / 2))
            plane = local_support(pose, depth_m, intrinsics, plane, reach_m, min_depth_m,
                                  max_depth_m)
        grasp_level = float(plane.height(pose.position_m))
        # a flat object cannot clear more than its own height above the support
        clearance_m = min(clearance_m, HEIGHT_FRACTION * max(grasp_level, 0.0))
    for name, polygon in zip(('first', 'second'), jaw_footprints(pose, intrinsics, config)):
        u, v, z = footprint_pixels(depth_m, polygon, min_depth_m, max_depth_m)
        if z.size == 0:
            return False, f'no valid depth under the {name} jaw'
        levels = -z if plane is None else plane.height(intrinsics.back_project(u, v, z))
        levels = levels[np.isfinite(levels)]
        if levels.size == 0:
            return False, f'no valid depth under the {name} jaw'
        top_m = float(percentile(levels, FOOTPRINT_PERCENTILE))
        if top_m > grasp_level - clearance_m:
            short_m = top_m - (grasp_level - clearance_m)
            return False, f'the {name} jaw lands {short_m:.3f} m short of the clearance'
    return True, ''
