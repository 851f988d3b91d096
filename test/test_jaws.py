"""Jaw clearance on scenes with known answers: boxes, a cup, touching neighbours, a slanted
table; and the detector filling max_grasps from the next peaks."""

import numpy as np
import pytest

from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.geometry import CameraIntrinsics
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.jaws import fit_support_plane, JawConfig, jaws_clear
from grasp_fcn_ros.core.model import ModelConfig
from grasp_fcn_ros.core.postprocess import PostprocessConfig
from grasp_fcn_ros.core.projection import project_grasp

CAMERA = CameraIntrinsics(585.0, 585.0, 319.5, 239.5, 640, 480)
TABLE_M = 0.70
JAWS = JawConfig(finger_width_m=0.01, jaw_depth_m=0.02, clearance_m=0.01)


def render(boxes=(), cups=(), tilt_deg=0.0):
    """Depth (metres) of a table at TABLE_M (turned by ``tilt_deg`` about the camera's x axis)
    with boxes ``(x_m, y_m, size_x_m, size_y_m, height_m)`` and cups ``(x_m, y_m, outer_m,
    wall_m, height_m, floor_m)`` standing on it, seen straight down by CAMERA.

    Each pixel's ray is cut with the table and with every top face (a top view: side walls
    are not drawn, which the straight-down camera barely sees)."""
    rows, cols = np.mgrid[0:480, 0:640].astype(np.float64)
    rx, ry = (cols - CAMERA.cx) / CAMERA.fx, (rows - CAMERA.cy) / CAMERA.fy
    slope = np.tan(np.deg2rad(tilt_deg))
    depth = TABLE_M / (1.0 - slope * ry)  # the plane z = TABLE_M + slope * y

    def top(z_m, inside):
        nonlocal depth
        depth = np.where(inside(rx * z_m, ry * z_m) & (z_m < depth), z_m, depth)

    for x, y, sx, sy, h in boxes:
        top(TABLE_M - h, lambda px, py: (np.abs(px - x) <= sx / 2) & (np.abs(py - y) <= sy / 2))
    for x, y, outer, wall, h, floor in cups:
        top(TABLE_M - floor, lambda px, py: np.hypot(px - x, py - y) <= outer)
        top(TABLE_M - h, lambda px, py: (np.hypot(px - x, py - y) <= outer)
            & (np.hypot(px - x, py - y) >= outer - wall))
    return depth.astype(np.float32)


def grasp_at(x_m, y_m, z_m, angle_deg, opening_m):
    """A 2-D grasp at a camera-frame point, closing along ``angle_deg`` in the image."""
    u, v = CAMERA.project(np.array([x_m, y_m, z_m]))
    return Grasp2D(float(u), float(v), np.deg2rad(angle_deg), opening_m * CAMERA.fx / z_m)


def clear(depth, grasp, plane=True):
    pose = project_grasp(grasp, depth, CAMERA, 2, 0.1, 5.0)
    assert pose is not None
    support = fit_support_plane(depth, CAMERA, 0.1, 5.0) if plane else None
    return jaws_clear(pose, depth, CAMERA, JAWS, 0.1, 5.0, support)


def test_box_wider_than_the_opening_is_refused_across_its_face_and_kept_across_its_side():
    # an 8 x 3 cm box, 4 cm tall: a 5 cm opening fits across the 3 cm side only
    depth = render(boxes=[(0.0, 0.0, 0.08, 0.03, 0.04)])
    top = TABLE_M - 0.04
    ok, reason = clear(depth, grasp_at(0.0, 0.0, top, 90.0, 0.05))   # across the 3 cm side
    assert ok, reason
    ok, reason = clear(depth, grasp_at(0.0, 0.0, top, 0.0, 0.05))    # across the 8 cm face
    assert not ok and 'jaw lands' in reason
    # the same without a support plane (depth along the optical axis): same answers
    assert clear(depth, grasp_at(0.0, 0.0, top, 90.0, 0.05), plane=False)[0]
    assert not clear(depth, grasp_at(0.0, 0.0, top, 0.0, 0.05), plane=False)[0]


def test_cup_rim_grasp_is_kept():
    # a cup of 4 cm radius, 5 mm wall, 8 cm tall, its floor 5 mm above the table: a 3 cm
    # opening across the wall puts one jaw inside the cup and one outside it
    depth = render(cups=[(0.0, 0.0, 0.04, 0.005, 0.08, 0.005)])
    rim = TABLE_M - 0.08
    ok, reason = clear(depth, grasp_at(0.0375, 0.0, rim, 0.0, 0.03))
    assert ok, reason


def test_a_jaw_on_a_touching_neighbour_is_refused():
    # two 4 cm cubes side by side, touching: across the first along x, one jaw lands on the
    # second; across it along y both jaws reach the table
    depth = render(boxes=[(-0.02, 0.0, 0.04, 0.04, 0.04), (0.02, 0.0, 0.04, 0.04, 0.04)])
    top = TABLE_M - 0.04
    ok, reason = clear(depth, grasp_at(-0.02, 0.0, top, 0.0, 0.06))
    assert not ok and 'second jaw' in reason, reason
    assert clear(depth, grasp_at(-0.02, 0.0, top, 90.0, 0.06))[0]


def test_flat_object_on_a_slanted_table_is_kept():
    # a 6 mm flat object on a table turned 45 degrees: along the optical axis the table in front
    # of it is nearer than its top, above the table it is clear
    depth = render(boxes=[(0.0, 0.0, 0.03, 0.1, 0.006)], tilt_deg=45.0)
    top = float(depth[240, 320])
    grasp = grasp_at(0.0, 0.0, top, 0.0, 0.05)
    assert clear(depth, grasp)[0]
    plane = fit_support_plane(depth, CAMERA, 0.1, 5.0)
    assert np.degrees(np.arccos(abs(plane.normal[2]))) == pytest.approx(45.0, abs=1.0)


def render_bowl(box, curvature_per_m=0.2):
    """Depth (metres) of a table bent like a Kinect frame's (``z = TABLE_M + c (x^2 + y^2)``:
    3 cm deeper at the frame's sides than at its centre) with one box
    ``(x_m, y_m, size_x_m, size_y_m, height_m)`` on it, seen straight down by CAMERA."""
    rows, cols = np.mgrid[0:480, 0:640].astype(np.float64)
    rx, ry = (cols - CAMERA.cx) / CAMERA.fx, (rows - CAMERA.cy) / CAMERA.fy
    table = np.full(rows.shape, TABLE_M)
    for _ in range(3):  # the ray's intersection with the bent table, by fixed-point iteration
        table = TABLE_M + curvature_per_m * ((rx * table) ** 2 + (ry * table) ** 2)
    x, y, sx, sy, height = box
    inside = (np.abs(rx * table - x) <= sx / 2) & (np.abs(ry * table - y) <= sy / 2)
    return np.where(inside, table - height, table).astype(np.float32)


@pytest.mark.parametrize('x_m', [0.0, 0.15])
def test_flat_object_on_a_bent_table_is_kept_by_the_local_support(x_m):
    # one plane fitted to the whole bent table lies millimetres off it near the object, as much
    # as the object's 5 mm height: the frame's plane alone refuses the grasp, the table refitted
    # around it keeps it
    depth = render_bowl((x_m, 0.0, 0.03, 0.03, 0.005))
    top = TABLE_M + 0.2 * x_m ** 2 - 0.005
    for angle in (0.0, 90.0):
        grasp = grasp_at(x_m, 0.0, top, angle, 0.05)
        pose = project_grasp(grasp, depth, CAMERA, 2, 0.1, 5.0)
        plane = fit_support_plane(depth, CAMERA, 0.1, 5.0)
        assert not jaws_clear(pose, depth, CAMERA, JAWS, 0.1, 5.0, plane, local=False)[0]
        assert jaws_clear(pose, depth, CAMERA, JAWS, 0.1, 5.0, plane)[0], angle


def test_box_on_a_bent_table_is_still_refused_across_its_face():
    depth = render_bowl((0.15, 0.0, 0.08, 0.03, 0.04))
    top = TABLE_M + 0.2 * 0.15 ** 2 - 0.04
    assert not clear(depth, grasp_at(0.15, 0.0, top, 0.0, 0.05))[0]  # the jaws land on it
    assert clear(depth, grasp_at(0.15, 0.0, top, 90.0, 0.05))[0]  # across its 3 cm side


class PeaksBackend:
    """Output maps with one Gaussian Q blob per (row, col, quality, angle, width) peak."""

    def __init__(self, peaks):
        self.config = ModelConfig()
        rows, cols = np.mgrid[0:400, 0:400]
        self.output = np.zeros((4, 400, 400), np.float32)
        for row, col, quality, angle_deg, width_px in peaks:
            blob = quality * np.exp(-((cols - col) ** 2 + (rows - row) ** 2) / (2 * 4.0 ** 2))
            near = blob > self.output[0]
            self.output[0] = np.maximum(self.output[0], blob)
            a = np.deg2rad(angle_deg)
            self.output[1][near] = np.cos(2 * a)
            self.output[2][near] = np.sin(2 * a)
            self.output[3][near] = blob[near] * width_px / self.config.max_width_px

    def predict(self, batch):
        return self.output[None]


def test_max_grasps_fills_from_the_next_peaks():
    # a 3 x 8 cm box, 4 cm tall, in the centre of the 400 px crop (network pixel = source pixel
    # - (120, 40)); the best peak closes across its 8 cm face, the next two across its 3 cm
    # side further along it, the last on the bare table
    depth = render(boxes=[(0.0, 0.0, 0.03, 0.08, 0.04)])
    width_px = 0.05 * CAMERA.fx / (TABLE_M - 0.04)
    peaks = [(199.0, 199.0, 1.0, 90.0, width_px),        # across the face: refused
             (184.0, 199.0, 0.9, 0.0, width_px),         # across the side: kept
             (214.0, 199.0, 0.8, 0.0, width_px),         # across the side: kept
             (320.0, 80.0, 0.7, 0.0, width_px)]          # bare table
    config = DetectorConfig(postprocess=PostprocessConfig(q_threshold=0.1, max_grasps=2),
                            scale_mode='pixels')
    detection = GraspDetector(PeaksBackend(peaks), config).detect(depth, CAMERA)
    assert [(g.u, g.v) for g in detection.grasps_2d] == [(319.0, 224.0), (319.0, 254.0)]
    assert len(detection.grasps_3d) == 2
    assert [round(np.degrees(g.angle)) for g in detection.grasps_2d] == [0, 0]
    assert [(g.u, g.v) for g in detection.rejected] == [(319.0, 239.0)]
    # without the check the refused peak comes first
    config = DetectorConfig(postprocess=config.postprocess, scale_mode='pixels',
                            jaws=JawConfig(enabled=False))
    detection = GraspDetector(PeaksBackend(peaks), config).detect(depth, CAMERA)
    assert (detection.grasps_2d[0].u, detection.grasps_2d[0].v) == (319.0, 239.0)
    assert not detection.rejected
