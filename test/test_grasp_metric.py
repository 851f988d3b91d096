import numpy as np
import pytest

from grasp_fcn_ros.core.grasp import angle_difference, Grasp2D, grasp_matches, polygon_iou


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
