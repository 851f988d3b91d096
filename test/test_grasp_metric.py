from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from grasp_fcn_ros.core.grasp import (
    angle_difference,
    best_match_iou,
    direction,
    Grasp2D,
    grasp_matches,
    polygon_iou,
)


def _gt():
    return Grasp2D(u=200.0, v=150.0, angle=np.deg2rad(20.0), width_px=60.0, jaw_px=30.0)


def _shifted_for_iou(g, iou):
    # sliding along the opening by d: IoU = (W - d) / (W + d)
    d = g.width_px * (1 - iou) / (1 + iou)
    du, dv = np.cos(g.angle) * d, -np.sin(g.angle) * d
    return Grasp2D(g.u + du, g.v + dv, g.angle, g.width_px, jaw_px=g.jaw_px)


def test_identical_rectangles_match():
    g = _gt()
    assert polygon_iou(g.polygon(), g.polygon()) == pytest.approx(1.0)
    assert grasp_matches(g, [g])


@pytest.mark.parametrize('degrees,expected', [(29.0, True), (31.0, False), (-29.0, True),
                                              (-31.0, False)])
def test_angle_limit_30_degrees(degrees, expected):
    g = _gt()
    turned = Grasp2D(g.u, g.v, g.angle + np.deg2rad(degrees), g.width_px, jaw_px=g.jaw_px)
    assert polygon_iou(turned.polygon(), g.polygon()) > 0.25
    assert grasp_matches(turned, [g]) is expected


@pytest.mark.parametrize('iou,expected', [(0.24, False), (0.26, True)])
def test_jaccard_limit(iou, expected):
    g = _gt()
    shifted = _shifted_for_iou(g, iou)
    assert polygon_iou(shifted.polygon(), g.polygon()) == pytest.approx(iou, abs=1e-4)
    assert grasp_matches(shifted, [g], iou_threshold=0.25) is expected


def test_best_match_iou_is_the_largest_iou_within_the_angle_limit():
    g = _gt()
    near, far = _shifted_for_iou(g, 0.6), _shifted_for_iou(g, 0.3)
    turned = Grasp2D(g.u, g.v, g.angle + np.deg2rad(40.0), g.width_px, jaw_px=g.jaw_px)
    assert best_match_iou(g, [far, near]) == pytest.approx(0.6, abs=1e-4)
    # the identical rectangle turned past 30 degrees does not count
    assert best_match_iou(g, [far, turned]) == pytest.approx(0.3, abs=1e-4)
    assert best_match_iou(g, [turned]) == 0.0 and best_match_iou(g, []) == 0.0
    # the metric is this IoU against the threshold
    for threshold in (0.25, 0.35, 0.5, 0.65):
        assert grasp_matches(g, [far, near, turned], threshold) is (
            best_match_iou(g, [far, near, turned]) > threshold)


def test_angle_wraps_modulo_pi():
    assert np.rad2deg(angle_difference(np.deg2rad(179.0), np.deg2rad(1.0))) == pytest.approx(2)
    a = Grasp2D(100, 100, np.deg2rad(89.0), 50, jaw_px=20)
    b = Grasp2D(100, 100, np.deg2rad(-89.0), 50, jaw_px=20)
    assert grasp_matches(a, [b])


def test_any_ground_truth_suffices():
    g = _gt()
    far = Grasp2D(10, 10, 0.0, 20)
    assert grasp_matches(g, [far, g])
    assert not grasp_matches(g, [far])
    assert not grasp_matches(g, [])


def test_from_polygon_reads_cornell_corners():
    corners = np.array([[253, 319.7], [309, 324], [307, 350], [251, 345.7]])
    g = Grasp2D.from_polygon(corners)
    assert g.width_px == pytest.approx(np.hypot(56, 4.3))
    assert g.jaw_px == pytest.approx(np.hypot(2, 26))
    assert np.rad2deg(g.angle) == pytest.approx(np.rad2deg(np.arctan2(-4.3, 56)))
    assert (g.u, g.v) == pytest.approx((280.0, 334.85))
    again = Grasp2D.from_polygon(g.polygon())
    assert polygon_iou(again.polygon(), g.polygon()) == pytest.approx(1.0, abs=1e-6)


def test_degenerate_polygon_has_zero_iou():
    flat = np.array([[0, 0], [10, 0], [10, 0], [0, 0]])
    assert polygon_iou(flat, _gt().polygon()) == 0.0


# An independent, exact reference: Sutherland-Hodgman clipping in rational arithmetic.

def _exact_area(points):
    total = Fraction(0)
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2


def _exact_ccw(points):
    signed = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]))
    return points if signed > 0 else points[::-1]


def _exact_clip(subject, clip):
    output = list(subject)
    for (ax, ay), (bx, by) in zip(clip, clip[1:] + clip[:1]):
        if not output:
            break
        points, output = output, []

        def side(p):
            return (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)

        for p, q in zip(points, points[1:] + points[:1]):
            sp, sq = side(p), side(q)
            if sp >= 0:
                output.append(p)
            if (sp > 0 > sq) or (sp < 0 < sq):
                t = sp / (sp - sq)
                output.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return output


def exact_iou(poly_a, poly_b):
    """IoU of two convex polygons computed in exact rationals from their float64 corners."""
    a = _exact_ccw([(Fraction(float(x)), Fraction(float(y))) for x, y in poly_a])
    b = _exact_ccw([(Fraction(float(x)), Fraction(float(y))) for x, y in poly_b])
    inter = _exact_clip(a, b)
    inter_area = _exact_area(inter) if len(inter) >= 3 else Fraction(0)
    union = _exact_area(a) + _exact_area(b) - inter_area
    return float(inter_area / union)


def test_exact_reference_agrees_with_the_analytic_slide():
    g = _gt()
    for iou in (0.1, 0.25, 0.5, 0.9):
        assert exact_iou(_shifted_for_iou(g, iou).polygon(), g.polygon()) == pytest.approx(
            iou, abs=1e-12)


def test_collinear_slide_that_opencv_gets_wrong():
    # Two rectangles whose long edges are collinear, slid along the opening: OpenCV's float32
    # convex clipper returned an IoU near 1 for one order of the pair.
    rng = np.random.default_rng(0)
    for _ in range(2000):
        angle = rng.uniform(-np.pi / 2, np.pi / 2)
        width, jaw = rng.uniform(10, 100), rng.uniform(5, 50)
        g = Grasp2D(rng.uniform(50, 400), rng.uniform(50, 400), angle, width, jaw_px=jaw)
        d = rng.uniform(0, width)
        h = Grasp2D(g.u + np.cos(angle) * d, g.v - np.sin(angle) * d, angle, width, jaw_px=jaw)
        expected = (width - d) / (width + d)
        assert polygon_iou(h.polygon(), g.polygon()) == pytest.approx(expected, abs=1e-9)
        assert polygon_iou(g.polygon(), h.polygon()) == pytest.approx(expected, abs=1e-9)


_coord = st.floats(0.0, 640.0, allow_nan=False)
_grasps = st.builds(Grasp2D, u=_coord, v=_coord,
                    angle=st.floats(-np.pi / 2, np.pi / 2, allow_nan=False),
                    width_px=st.floats(1.0, 150.0), jaw_px=st.floats(1.0, 80.0))


@settings(max_examples=300, deadline=None)
@given(_grasps, _grasps)
def test_iou_is_symmetric_and_exact(a, b):
    forward = polygon_iou(a.polygon(), b.polygon())
    assert forward == polygon_iou(b.polygon(), a.polygon())
    assert 0.0 <= forward <= 1.0
    assert forward == pytest.approx(exact_iou(a.polygon(), b.polygon()), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(_grasps)
def test_iou_with_itself_is_one(a):
    assert polygon_iou(a.polygon(), a.polygon()) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(_grasps, st.floats(-1.2, 1.2), st.booleans())
def test_collinear_pairs_against_the_exact_reference(a, slide, across):
    # b is a slid along its opening or across it: two of its edges stay collinear with a's
    along = direction(a.angle)
    normal = np.array([-along[1], along[0]])
    offset = normal * slide * a.jaw_px if across else along * slide * a.width_px
    b = Grasp2D(a.u + offset[0], a.v + offset[1], a.angle, a.width_px, jaw_px=a.jaw_px)
    expected = exact_iou(a.polygon(), b.polygon())
    assert polygon_iou(a.polygon(), b.polygon()) == pytest.approx(expected, abs=1e-9)
    assert polygon_iou(b.polygon(), a.polygon()) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(_grasps, _grasps, st.floats(-np.pi, np.pi), st.floats(-500.0, 500.0),
       st.floats(-500.0, 500.0))
def test_iou_is_invariant_to_rotation_and_translation(a, b, theta, du, dv):
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shift = np.array([du, dv])
    moved_a = a.polygon() @ rotation.T + shift
    moved_b = b.polygon() @ rotation.T + shift
    assert polygon_iou(moved_a, moved_b) == pytest.approx(
        polygon_iou(a.polygon(), b.polygon()), abs=1e-9)
