"""Synthetic scenes: grasp labels on known scenes, determinism, the sensor model's statistics and
the ``synth`` command's files."""

import numpy as np
import pytest
import shapely

from grasp_fcn_ros.cli import main
from grasp_fcn_ros.core.geometry import CameraIntrinsics
from grasp_fcn_ros.core.grasp import polygon_iou
from grasp_fcn_ros.synthetic import (
    Camera,
    GraspConfig,
    make_scene,
    make_shape,
    OBJECT_KINDS,
    PlacedObject,
    render,
    render_sample,
    sample_of_scene,
    SceneConfig,
    SensorModel,
    SyntheticSamples,
    TopDownGrid,
)
from grasp_fcn_ros.synthetic.labels import FRICTION, NOT_AN_OBJECT, OFF_CENTRE, OK, TOO_WIDE
from grasp_fcn_ros.synthetic.shapes import Box, Cup, Cylinder, Ellipsoid, Shape
from grasp_fcn_ros.training.dataset import find_samples

CONFIG = GraspConfig()
CONE = np.arctan(CONFIG.friction)


def _grid(*objects):
    return TopDownGrid(make_scene(objects), CONFIG.cell_m, margin_m=0.15)


def _labels(grid, seed=0, **changes):
    from dataclasses import replace
    return grid.sample(np.random.default_rng(seed), replace(CONFIG, **changes))


def _evaluate(grid, points, angles, margin=0.01, jaw=0.03):
    points = np.atleast_2d(points).astype(float)
    n = len(points)
    return grid.evaluate(points, np.broadcast_to(angles, (n,)), np.full(n, margin),
                         np.full(n, jaw), CONFIG)


def _off(angle, target):
    """Angle difference modulo pi, radians."""
    return abs((angle - target + np.pi / 2) % np.pi - np.pi / 2)


def test_box_is_grasped_across_its_short_side_only():
    # 20 cm x 4 cm x 5 cm, long side along x: 4 cm fits the 15 cm gripper, 20 cm does not
    grid = _grid(PlacedObject(Box(0.20, 0.04, 0.05), 0.0, 0.0))
    along = np.stack([np.linspace(-0.08, 0.08, 9), np.zeros(9)], 1)
    across = _evaluate(grid, along, np.pi / 2)
    assert np.all(across.reason == OK)
    np.testing.assert_allclose(across.opening, 0.04 + 0.02, atol=2e-3)
    np.testing.assert_allclose(across.contact_z, 0.025)
    lengthwise = _evaluate(grid, along, 0.0)
    assert np.all(lengthwise.reason == TOO_WIDE)
    # off the centre line, across: the centre moves back onto it (the contacts' midpoint)
    shifted = _evaluate(grid, [[0.03, 0.012]], np.pi / 2)
    assert shifted.reason[0] == OK and abs(shifted.centre[0, 1]) < 1e-3
    # slanted beyond the friction cone: no
    assert _evaluate(grid, [[0.0, 0.0]], np.pi / 2 + CONE + 0.1).reason[0] == FRICTION

    labels = _labels(grid)
    assert len(labels) >= 5
    centres = np.array([g.centre for g in labels])
    assert np.all(np.abs(centres[:, 1]) < 1.5e-3)  # on the centre line
    assert np.ptp(centres[:, 0]) > 0.08  # spread along it
    assert all(_off(g.angle, np.pi / 2) <= CONE for g in labels)  # across the short side
    np.testing.assert_allclose(centres[:, 2], 0.05)  # on the top face


def test_sphere_is_grasped_at_every_angle_through_its_centre():
    grid = _grid(PlacedObject(Ellipsoid(0.03, 0.03, 0.03), 0.02, -0.01))
    angles = np.deg2rad(np.arange(0, 180, 10))
    result = _evaluate(grid, np.tile([0.02, -0.01], (len(angles), 1)), angles)
    assert np.all(result.reason == OK)
    np.testing.assert_allclose(result.contact_z, 0.03)  # at the equator
    np.testing.assert_allclose(result.opening, 0.06 + 0.02, atol=2.5e-3)
    np.testing.assert_allclose(result.centre, np.tile([0.02, -0.01], (len(angles), 1)),
                               atol=1.5e-3)
    labels = _labels(grid)
    assert len(labels) >= 5
    assert len({int(np.degrees(g.angle) // 30) for g in labels}) >= 4  # many angles
    for g in labels:  # off the centre only as far as the friction cone allows
        assert np.hypot(g.centre[0] - 0.02, g.centre[1] + 0.01) < 0.03 * np.sin(CONE) + 1.5e-3


def test_no_positive_lies_on_the_bare_table():
    grid = _grid(PlacedObject(Box(0.06, 0.04, 0.03), 0.0, 0.0))
    table = [[0.1, 0.0], [0.0, 0.08], [-0.05, -0.05]]
    assert np.all(_evaluate(grid, table, 0.3).reason == NOT_AN_OBJECT)
    assert _labels(_grid()) == []
    # a ring held around its body would centre over the table in its hole: not a label
    ring = _grid(PlacedObject(Cup(0.04, 0.03, 0.01, 0.0), 0.0, 0.0))
    result = _evaluate(ring, [[0.035, 0.0]], 0.0, jaw=0.015)
    assert result.reason[0] == OK and result.opening[0] < 0.04  # across the wall
    wall = np.full(8, 0.031), np.zeros(8)
    around = ring.evaluate(np.stack(wall, 1), np.zeros(8), np.full(8, 0.01),
                           np.full(8, 0.02), CONFIG, enclose=np.ones(8, bool))
    assert np.all(around.reason == OFF_CENTRE)
    # in random scenes with rings and cups, every label's centre is on top of the object
    # it grasps
    config = SceneConfig(kinds=('ring', 'cup', 'box', 'cable'), objects=(3, 4))
    for index in range(3):
        sample = render_sample(11, index, config)
        grid = TopDownGrid(sample.scene, CONFIG.cell_m, 0.15)
        for g in sample.labels:
            obj, _, top = grid.topmost(np.array([g.centre[0]]), np.array([g.centre[1]]))
            assert obj[0] == g.obj and sample.scene.objects[g.obj].graspable
            assert top[0] > 0 and g.centre[2] == pytest.approx(top[0])


def _jaw_footprints(label):
    d = np.array([np.cos(label.angle), np.sin(label.angle)])
    n = np.array([-d[1], d[0]])
    out = []
    for side in (-1, 1):
        c = label.centre[:2] + side * (label.opening_m / 2 + CONFIG.finger_width_m / 2) * d
        a, b = d * CONFIG.finger_width_m / 2, n * label.jaw_m / 2
        out.append(shapely.Polygon([c - a - b, c + a - b, c + a + b, c - a + b]))
    return out


def test_touching_boxes_get_no_jaw_on_the_neighbour():
    boxes = [PlacedObject(Box(0.05, 0.05, 0.05), 0.0, 0.0),
             PlacedObject(Box(0.05, 0.05, 0.05), 0.05, 0.0)]  # faces touch at x = 0.025
    grid = _grid(*boxes)
    labels = _labels(grid, candidates_per_object=800)
    assert {g.obj for g in labels} == {0, 1}
    for g in labels:
        other = shapely.Polygon(boxes[1 - g.obj].footprint())
        for jaw in _jaw_footprints(g):
            assert jaw.intersection(other).area < 1e-7
        assert _off(g.angle, np.pi / 2) <= CONE  # never across the touching faces
    # across both boxes at once: the line runs into the neighbour
    assert _evaluate(grid, [[0.0, 0.0]], 0.0).reason[0] != OK


def test_cup_gets_rim_grasps():
    radius, wall = 0.05, 0.005
    grid = _grid(PlacedObject(Cup(radius, 0.10, wall, 0.006), 0.0, 0.0))
    labels = _labels(grid, candidates_per_object=800, max_per_object=30)
    rim = [g for g in labels
           if abs(np.hypot(*g.centre[:2]) - (radius - wall / 2)) < 2e-3]
    # held around the body: a chord within the friction cone of a diameter
    body = [g for g in labels if np.hypot(*g.centre[:2]) < radius * np.sin(CONE) + 2e-3
            and g.opening_m > 2 * radius * np.cos(CONE)]
    assert len(rim) >= 3 and len(rim) + len(body) == len(labels)  # nothing else
    for g in body:  # fingers reaching down from the rim
        assert g.opening_m <= CONFIG.max_opening_m
        assert g.contact_z == pytest.approx(0.10 - CONFIG.finger_length_m)
    for g in rim:
        radial = np.arctan2(g.centre[1], g.centre[0])
        assert _off(g.angle, radial) <= CONE + 0.05  # across the wall
        assert g.opening_m < wall + 2 * CONFIG.margin_m[1] + 2e-3
        assert g.centre[2] == pytest.approx(0.10)


def test_ray_cast_columns_match_the_shapes_formulas():
    rng = np.random.default_rng(0)
    for shape in (Box(0.1, 0.05, 0.03), Cylinder(0.03, 0.1), Cylinder(0.02, 0.15, lying=True),
                  Ellipsoid(0.04, 0.03, 0.02)):
        x = rng.uniform(-1.2, 1.2, 4000) * shape.half_x
        y = rng.uniform(-1.2, 1.2, 4000) * shape.half_y
        for cast, exact in zip(Shape.column(shape, x, y), shape.column(x, y)):
            np.testing.assert_array_equal(np.isnan(cast), np.isnan(exact))
            np.testing.assert_allclose(cast, exact, atol=1e-9)


def test_same_seed_same_scene_and_labels():
    a, b = render_sample(5, 2), render_sample(5, 2)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    assert a.describe() == b.describe()
    assert [g.polygon().tolist() for g in a.grasps] == [g.polygon().tolist() for g in b.grasps]
    c = render_sample(5, 3)
    assert a.describe()['objects'] != c.describe()['objects']


def test_samples_render_on_demand_like_a_list():
    samples = SyntheticSamples(5, 3, start=1)
    assert len(samples) == 3
    again = render_sample(5, 2)
    np.testing.assert_array_equal(samples[1].depth_m, again.depth_m)
    assert samples[-1].name == 'pcd0003' and [s.name for s in samples[:2]] == ['pcd0001',
                                                                              'pcd0002']
    with pytest.raises(IndexError):
        samples[3]


def test_every_object_kind_renders_and_is_labelled():
    rng = np.random.default_rng(0)
    for kind in OBJECT_KINDS:
        shape = make_shape(kind, rng, cell=0.001)
        sample = sample_of_scene(make_scene([PlacedObject(shape, 0.0, 0.0, 0.4)]),
                                 SceneConfig(sensor=SensorModel(enabled=False)))
        assert (sample.ids >= 10).sum() > 50, kind
        assert sample.grasps or kind == 'bowl', kind


def _quiet(**changes):
    """A sensor model with every effect off but the ones asked for."""
    base = dict(disparity_noise_px=0.0, noise_correlation_px=0.0, disparity_step_px=0.0,
                smoothing_px=0.0, warp=0.0, edge_drop=0.0, shadow=False, grazing_deg=90.0,
                dropout=0.0, blobs=0.0, dark_object_probability=0.0, fill_probability=0.0)
    base.update(changes)
    return SensorModel(**base)


K = CameraIntrinsics(585.0, 585.0, 319.5, 239.5, 640, 480)


@pytest.mark.parametrize('z, correlation', [(1.0, 0.0), (2.0, 0.0), (1.5, 1.0)])
def test_sensor_noise_matches_its_sigma(z, correlation):
    sensor = _quiet(disparity_noise_px=0.08, noise_correlation_px=correlation)
    depth = np.full((480, 640), z)
    out = sensor.apply(depth, K, np.random.default_rng(0))
    assert np.isfinite(out).all()
    assert np.std(out - z) == pytest.approx(sensor.sigma_m(z, K.fx), rel=0.06)
    assert sensor.sigma_m(2.0, K.fx) == pytest.approx(4 * sensor.sigma_m(1.0, K.fx))


def test_sensor_quantises_disparity():
    sensor = _quiet(disparity_step_px=0.125)
    depth = np.linspace(0.8, 1.6, 640)[None].repeat(10, 0)
    out = sensor.apply(depth, K, np.random.default_rng(0)).astype(np.float64)
    steps = K.fx * sensor.baseline_m / out / 0.125
    np.testing.assert_allclose(steps, np.round(steps), atol=2e-3)
    assert np.max(np.abs(out - depth)) <= sensor.step_m(1.6, K.fx) / 2 + 1e-4


def test_sensor_holes_match_their_parameters():
    depth = np.full((480, 640), 1.0)
    out = _quiet(dropout=0.05).apply(depth, K, np.random.default_rng(1))
    assert np.isnan(out).mean() == pytest.approx(0.05, abs=0.003)
    out = _quiet(dropout=0.05, fill_probability=1.0).apply(depth, K, np.random.default_rng(1))
    assert np.isfinite(out).all()
    far = _quiet(max_range_m=1.5).apply(np.full((4, 4), 2.0), K, np.random.default_rng(0))
    assert np.isnan(far).all()


def test_projector_shadow_falls_beside_objects_on_the_projector_s_far_side():
    # a 10 cm tall box seen from 1 m straight above: the top at 0.9 m
    camera = Camera.looking_at_table(K, 0.0, 1.0)
    scene = make_scene([PlacedObject(Box(0.1, 0.1, 0.1), 0.0, 0.0)], camera=camera)
    rendering = render(scene)
    sensor = _quiet(shadow=True)
    out = sensor.apply(rendering.depth, K, np.random.default_rng(0))
    row = 240
    on_box = np.flatnonzero(rendering.ids[row] >= 10)
    lost = np.flatnonzero(np.isnan(out[row]))
    width = K.fx * sensor.baseline_m * (1 / 0.9 - 1 / 1.0)  # 4.9 px
    assert len(lost) == pytest.approx(width, abs=1)
    assert lost.max() < on_box.min()  # left of the box, the projector being at +x
    assert on_box.min() - lost.min() == pytest.approx(width, abs=1)
    mirrored = SensorModel(**{**sensor.__dict__, 'projector_side': -1})
    lost = np.flatnonzero(np.isnan(mirrored.apply(rendering.depth, K,
                                                  np.random.default_rng(0))[row]))
    assert lost.min() > on_box.max()


def test_the_loader_reads_synth_output(tmp_path):
    out = tmp_path / 'synthetic'
    assert main(['synth', '--output', str(out), '--count', '2', '--seed', '4',
                 '--objects', '1-2']) == 0
    samples, skipped = find_samples(str(out))
    assert [s.name for s in samples] == ['pcd0000', 'pcd0001'] and skipped == 0
    config = SceneConfig(objects=(1, 2))
    for sample in samples:
        sample.load()
        expected = render_sample(4, int(sample.name[3:]), config)
        np.testing.assert_array_equal(sample.depth_m, expected.depth_m)
        assert len(sample.grasps) == len(expected.grasps) > 0
        for got, want in zip(sample.grasps, expected.grasps):
            assert polygon_iou(got.polygon(), want.polygon()) == pytest.approx(1.0, abs=1e-3)
        assert sample.load_color().shape == (480, 640, 3)
