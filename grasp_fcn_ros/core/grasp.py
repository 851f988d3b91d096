"""The one grasp representation: a 2-D grasp, its rectangle and the rectangle metric.

Angles are in radians in the image plane, measured counter-clockwise as seen in the image
(towards -v), in (-pi/2, pi/2]; a grasp and the same grasp turned by pi are identical. The
gripper opens along the angle's direction.
"""

from dataclasses import dataclass

import numpy as np
import shapely

#: Jaw size of a predicted rectangle as a fraction of its opening width (GG-CNN convention).
JAW_FRACTION = 0.5


def wrap_angle(angle_rad):
    """Wrap angles (radians) into [-pi/2, pi/2), the range of a symmetric grasp."""
    return (np.asarray(angle_rad, dtype=np.float64) + np.pi / 2) % np.pi - np.pi / 2


def angle_difference(a_rad, b_rad):
    """Absolute difference of grasp angles modulo pi, in [0, pi/2] radians."""
    return np.abs(wrap_angle(np.asarray(a_rad) - np.asarray(b_rad)))


def direction(angle_rad):
    """Image-plane unit vector (du, dv) of a grasp angle (v grows downwards)."""
    return np.array([np.cos(angle_rad), -np.sin(angle_rad)])


@dataclass
class Grasp2D:
    """A grasp in image pixels.

    :param u: centre column, pixels.
    :param v: centre row, pixels.
    :param angle: gripper closing direction in the image, radians.
    :param width_px: gripper opening, pixels.
    :param quality: grasp quality in [0, 1].
    :param jaw_px: jaw size (the rectangle's other side), pixels; defaults to
        ``JAW_FRACTION * width_px``.
    """

    u: float
    v: float
    angle: float
    width_px: float
    quality: float = 1.0
    jaw_px: float = None

    def __post_init__(self):
        if self.jaw_px is None:
            self.jaw_px = JAW_FRACTION * self.width_px

    @property
    def center(self):
        return np.array([self.u, self.v])

    def polygon(self, width_px=None, jaw_px=None):
        """The rectangle's four corners (4, 2) in pixels, in order around it."""
        width_px = self.width_px if width_px is None else width_px
        jaw_px = self.jaw_px if jaw_px is None else jaw_px
        along = direction(self.angle) * width_px / 2
        across = np.array([-along[1], along[0]]) / max(width_px, 1e-12) * jaw_px
        c = self.center
        return np.array([c - along - across, c + along - across,
                         c + along + across, c - along + across])

    @classmethod
    def from_polygon(cls, corners, quality=1.0):
        """Build from a Cornell rectangle: corners p0..p3 with p0->p1 along the opening.

        :param corners: (4, 2) array of (u, v) pixels.
        """
        p = np.asarray(corners, dtype=np.float64)
        du, dv = p[1] - p[0]
        angle = float(wrap_angle(np.arctan2(-dv, du)))
        width_px = float(np.hypot(du, dv))
        jaw_px = float(np.linalg.norm(p[2] - p[1]))
        u, v = p.mean(axis=0)
        return cls(float(u), float(v), angle, width_px, quality, jaw_px)


def polygon_iou(poly_a, poly_b):
    """Intersection over union of two convex polygons (N, 2), in [0, 1].

    Computed exactly in float64 (GEOS, through shapely). The pair is put in a canonical order
    first, so ``polygon_iou(a, b) == polygon_iou(b, a)`` bit for bit. Degenerate polygons (zero
    area or non-finite corners) have IoU 0.
    """
    a = np.asarray(poly_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(poly_b, dtype=np.float64).reshape(-1, 2)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 0.0
    if b.tobytes() < a.tobytes():
        a, b = b, a
    shape_a, shape_b = shapely.Polygon(a), shapely.Polygon(b)
    area_a, area_b = shape_a.area, shape_b.area
    if area_a <= 0 or area_b <= 0:
        return 0.0
    inter = shape_a.intersection(shape_b).area
    union = area_a + area_b - inter
    return float(min(max(inter / union, 0.0), 1.0)) if union > 0 else 0.0


def best_match_iou(predicted, ground_truth, max_angle_rad=np.deg2rad(30.0)):
    """The largest IoU of a predicted grasp's rectangle with a ground-truth rectangle whose
    angle differs by less than ``max_angle_rad`` (modulo pi); 0 when none does.

    :param predicted: a :class:`Grasp2D`.
    :param ground_truth: iterable of :class:`Grasp2D`.
    """
    poly = predicted.polygon()
    return max((polygon_iou(poly, gt.polygon()) for gt in ground_truth
                if angle_difference(predicted.angle, gt.angle) < max_angle_rad), default=0.0)


def grasp_matches(predicted, ground_truth, iou_threshold=0.25,
                  max_angle_rad=np.deg2rad(30.0)):
    """The rectangle metric: does a predicted grasp match any ground-truth rectangle?

    Correct when, for at least one ground-truth grasp, the angle difference (modulo pi) is
    below ``max_angle_rad`` and the rectangles' IoU is above ``iou_threshold``
    (:func:`best_match_iou` above it).

    :param predicted: a :class:`Grasp2D`.
    :param ground_truth: iterable of :class:`Grasp2D`.
    """
    return best_match_iou(predicted, ground_truth, max_angle_rad) > iou_threshold
