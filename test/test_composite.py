"""Training augmentations: the left-right mirror and real-data compositing, on synthetic
depth frames whose table, boxes and rectangles are known exactly."""

import pickle

import cv2
import numpy as np
import pytest
import torch

from grasp_fcn_ros.cli import main
from grasp_fcn_ros.core.geometry import CORNELL_INTRINSICS
from grasp_fcn_ros.core.grasp import Grasp2D, wrap_angle
from grasp_fcn_ros.core.jaws import SupportPlane
from grasp_fcn_ros.core.model import GraspFCN, load_checkpoint, ModelConfig, save_checkpoint
from grasp_fcn_ros.core.preprocess import fill_window, normalise_input
from grasp_fcn_ros.training import composite, dataset
from grasp_fcn_ros.training.composite import (
    CLEARANCE_PX,
    DILATE_PX,
    fit_table_surface,
    ObjectLibrary,
    paste_object,
    segment_scene,
)
from grasp_fcn_ros.training.dataset import (
    AugmentConfig,
    augmented_input,
    CornellSample,
    GraspDataset,
    ground_truth_maps,
    make_example,
    transform_grasps,
)

from synthetic_cornell import write_dataset

K = CORNELL_INTRINSICS
H, W = 480, 640
SMALL = 80  # network input side of the CLI run


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(before)


def table_plane(tilt_deg, distance_m):
    """A table turned ``tilt_deg`` about the camera's x axis (its near part at the image's
    bottom), crossing the optical axis at ``distance_m``."""
    a = np.deg2rad(tilt_deg)
    normal = np.array([0.0, -np.sin(a), -np.cos(a)])
    return SupportPlane(normal, float(normal @ [0.0, 0.0, distance_m]))


def _rays():
    v, u = np.mgrid[0:H, 0:W]
    return np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones((H, W))], axis=-1)


def scene(plane, boxes, bend_m=0.0):
    """A depth frame of a table with boxes standing on it, and rectangles across each box.

    :param boxes: ``(u0, v0, w, h, height_m)``: the pixels that see the box's top.
    :param bend_m: depth added at the image's left and right edges (a curved table, as
        Cornell's depth files show), growing with the square of the column.
    :returns: a loaded :class:`CornellSample` and the (H, W) heights above the table.
    """
    heights = np.zeros((H, W))
    grasps = []
    for u0, v0, w, h, height_m in boxes:
        heights[v0:v0 + h, u0:u0 + w] = height_m
        cu, cv = u0 + (w - 1) / 2, v0 + (h - 1) / 2
        grasps += [Grasp2D(cu, cv, 0.0, w + 20.0, jaw_px=(w + 20.0) / 2),
                   Grasp2D(cu, cv + h / 4, 0.3, w + 16.0, jaw_px=(w + 16.0) / 2)]
    slope = -(_rays() @ plane.normal)
    u = np.arange(W)[None, :]
    table = -plane.offset / slope + bend_m * ((u - (W - 1) / 2) / (W / 2)) ** 2
    depth = (table - heights / slope).astype(np.float32)
    sample = CornellSample('synthetic', '', None, '', depth_m=depth, grasps=grasps)
    return sample, heights


def true_heights(plane, depth):
    """Heights above an exact plane of every pixel, metres."""
    return (_rays() * depth[..., None].astype(np.float64)) @ plane.normal - plane.offset


def full_mask(cutout):
    mask = np.zeros((H, W), bool)
    h, w = cutout.mask.shape
    mask[cutout.y0:cutout.y0 + h, cutout.x0:cutout.x0 + w] = cutout.mask
    return mask


def box_mask(box, grow=0):
    """The box's pixels, grown by ``grow`` pixels (a disc, as the clearance grows)."""
    u0, v0, w, h = box[:4]
    mask = np.zeros((H, W), np.uint8)
    mask[v0:v0 + h, u0:u0 + w] = 1
    if grow:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        mask = cv2.dilate(mask, disc)
    return mask.astype(bool)


DONOR_BOX = (300, 220, 60, 40, 0.05)
TARGET_BOX = (180, 280, 50, 50, 0.03)


@pytest.fixture(scope='module')
def donor():
    return scene(table_plane(35.0, 0.8), [DONOR_BOX])[0]


@pytest.fixture(scope='module')
def target():
    return scene(table_plane(50.0, 0.9), [TARGET_BOX])[0]


# --- the table and the object -------------------------------------------------------------

def test_a_tilted_table_is_fitted_exactly():
    plane = table_plane(45.0, 0.8)
    sample, heights = scene(plane, [DONOR_BOX])
    surface = fit_table_surface(sample.depth_m, K, sample.grasps[0].center, 0.1, 5.0)
    assert np.allclose(surface.normal, plane.normal, atol=1e-4)
    found = surface.height_map(sample.depth_m)
    assert np.abs(found - heights).max() < 2e-4


def test_a_curved_table_is_followed_by_the_correction():
    # a plane leaves the bend (+-3 cm at the edges); the correction follows it to a millimetre
    sample, heights = scene(table_plane(45.0, 0.8), [DONOR_BOX], bend_m=0.03)
    surface = fit_table_surface(sample.depth_m, K, sample.grasps[0].center, 0.1, 5.0)
    found = surface.height_map(sample.depth_m)
    assert np.abs(found - heights).max() < 1e-3
    assert np.abs(surface.coefficients).max() > 0.01


def test_segmentation_finds_the_box_and_not_the_table(donor):
    objects = segment_scene(donor.depth_m, donor.grasps, K, 0.1, 5.0)
    mask = full_mask(objects.cutout)
    assert mask[box_mask(DONOR_BOX)].all()
    assert not mask[~box_mask(DONOR_BOX, DILATE_PX)].any()
    # the heights of the box's top, its rectangles relative to its bounding box
    cutout = objects.cutout
    u0, v0 = DONOR_BOX[0] - cutout.x0, DONOR_BOX[1] - cutout.y0
    top = cutout.heights_m[v0:v0 + DONOR_BOX[3], u0:u0 + DONOR_BOX[2]]
    assert np.allclose(top, 0.05, atol=2e-4)
    expected = np.array([g.polygon() for g in donor.grasps]) - [cutout.x0, cutout.y0]
    assert np.allclose(cutout.rectangles, expected)
    # nothing may go on the box (grown by the clearance), everything may go on open table
    blocked = objects.blocked()
    assert blocked[box_mask(DONOR_BOX, CLEARANCE_PX)].all()
    assert not blocked[380:470, 20:600].any()


def test_flat_objects_and_the_image_border_give_no_cutout():
    plane = table_plane(40.0, 0.8)
    flat, _ = scene(plane, [(300, 220, 60, 40, 0.003)])  # under the 6 mm threshold
    assert segment_scene(flat.depth_m, flat.grasps, K, 0.1, 5.0).cutout is None
    edge, _ = scene(plane, [(0, 220, 60, 40, 0.05)])  # touches the image's border
    assert segment_scene(edge.depth_m, edge.grasps, K, 0.1, 5.0).cutout is None


# --- pasting --------------------------------------------------------------------------------

def test_a_pasted_box_sits_on_the_target_table_with_its_rectangles(donor, target):
    cutout = segment_scene(donor.depth_m, donor.grasps, K, 0.1, 5.0).cutout
    objects = segment_scene(target.depth_m, target.grasps, K, 0.1, 5.0)
    depth = target.depth_m.copy()
    angle = np.deg2rad(30.0)
    matrix = cutout.placement((430.0, 330.0), angle)
    pasted = paste_object(depth, objects.surface, cutout, matrix, objects.blocked())
    assert pasted is not None
    # the box's top stands 5 cm above the target's (exact) table, like above its own table
    plane = table_plane(50.0, 0.9)
    heights = true_heights(plane, depth)
    fh, fw = pasted.object_mask.shape
    inside = np.zeros((H, W), bool)
    inside[pasted.y0:pasted.y0 + fh, pasted.x0:pasted.x0 + fw] = pasted.object_mask
    top = cv2.erode(inside.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert top.sum() > 1000
    assert np.abs(heights[top] - 0.05).max() < 1e-3
    # nothing floats or sinks: every pasted pixel is between the table and the box's top
    assert heights[inside].min() > -1e-3 and heights[inside].max() < 0.05 + 1e-3
    # the rest of the frame is untouched
    assert np.array_equal(depth[~inside], target.depth_m[~inside])
    # the box's centre went where it was put
    rows, cols = np.nonzero(inside)
    assert np.hypot(cols.mean() - 430.0, rows.mean() - 330.0) < 1.5
    # the rectangles moved with it: centres by the same transform, angles by the turn
    assert len(pasted.grasps) == len(donor.grasps)
    for moved, original in zip(pasted.grasps, donor.grasps):
        centre = matrix[:, :2] @ (original.center - [cutout.x0, cutout.y0]) + matrix[:, 2]
        assert np.allclose(moved.center, centre)
        assert abs(wrap_angle(moved.angle - original.angle - angle)) < 1e-9
        assert moved.width_px == pytest.approx(original.width_px)
        assert moved.jaw_px == pytest.approx(original.jaw_px)


def test_a_paste_onto_the_target_object_or_off_the_image_is_refused(donor, target):
    cutout = segment_scene(donor.depth_m, donor.grasps, K, 0.1, 5.0).cutout
    objects = segment_scene(target.depth_m, target.grasps, K, 0.1, 5.0)
    depth = target.depth_m.copy()
    on_it = cutout.placement((TARGET_BOX[0] + 60.0, TARGET_BOX[1] + 20.0), 0.0)
    assert paste_object(depth, objects.surface, cutout, on_it, objects.blocked()) is None
    off = cutout.placement((5.0, 400.0), 0.0)
    assert paste_object(depth, objects.surface, cutout, off, objects.blocked()) is None
    assert np.array_equal(depth, target.depth_m)


@pytest.fixture(scope='module')
def library():
    samples = [scene(table_plane(tilt, 0.85), [box])[0] for tilt, box in (
        (35.0, (300, 220, 60, 40, 0.05)), (45.0, (250, 260, 40, 70, 0.04)),
        (50.0, (340, 200, 50, 30, 0.06)), (40.0, (280, 240, 70, 45, 0.02)))]
    boxes = [(300, 220, 60, 40), (250, 260, 40, 70), (340, 200, 50, 30), (280, 240, 70, 45)]
    objects = ObjectLibrary(samples, K, 0.1, 5.0)
    assert objects.prepare() == 4
    return samples, boxes, objects


def test_composited_objects_keep_clear_of_the_target_and_of_each_other(library):
    samples, boxes, objects = library
    assert objects.scene(1) is objects.scene(1)  # segmented once
    pasted_count = 0
    for key in range(40):
        index = key % len(samples)
        sample = samples[index]
        rng = np.random.default_rng(key)
        window, _, _ = dataset._augmented_transforms(sample, sample.depth_m.shape, 400, 400, rng,
                                                     AugmentConfig())
        depth, grasps, pasted = objects.composite(index, sample.depth_m, sample.grasps,
                                                  window, rng, 2)
        own = box_mask(boxes[index], CLEARANCE_PX)
        own |= composite._rectangles_mask((H, W), [g.polygon() for g in sample.grasps])
        taken = np.zeros((H, W), bool)
        for placed in pasted:
            fh, fw = placed.footprint.shape
            footprint = np.zeros((H, W), bool)
            footprint[placed.y0:placed.y0 + fh, placed.x0:placed.x0 + fw] = placed.footprint
            assert not (footprint & own).any()
            assert not (footprint & taken).any()
            taken |= footprint
            # the object's anchor is in the part of the crop window every turn shows
            centre = placed.matrix[:, 2] + placed.matrix[:, :2] @ objects.scene(
                placed.donor).cutout.anchor
            margin = 0.15 * window.size
            assert window.x0 + margin - 1 <= centre[0] <= window.x0 + window.size - margin
            assert window.y0 + margin - 1 <= centre[1] <= window.y0 + window.size - margin
            assert placed.donor != index
        assert len(grasps) == len(sample.grasps) + sum(len(p.grasps) for p in pasted)
        changed = depth != sample.depth_m
        assert not (changed & ~taken).any()
        pasted_count += len(pasted)
    assert pasted_count >= 30
    assert all(np.isfinite(s.depth_m).all() for s in samples)  # the samples are untouched


# --- the examples --------------------------------------------------------------------------

def _legacy_example(sample, input_size, crop_size_px, max_width_px, rng, augment):
    """make_example as it was before the mirror and the compositing."""
    window, outer, rotation = dataset._augmented_transforms(sample, sample.depth_m.shape,
                                                            input_size, crop_size_px, rng,
                                                            augment)
    to_window = rotation @ dataset._homogeneous(window.affine_to_network())
    outer_to_window = to_window @ np.linalg.inv(dataset._homogeneous(outer.affine_to_network()))
    filled = cv2.warpAffine(fill_window(sample.depth_m, outer), outer_to_window[:2],
                            (input_size, input_size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    grasps = transform_grasps(sample.grasps, to_window[:2])
    return normalise_input(filled)[None], ground_truth_maps(grasps, input_size, max_width_px)


def test_without_the_new_options_examples_are_bit_identical(library):
    samples, _, objects = library
    off = AugmentConfig(flip=False, composite=0.0, composite_max_objects=3)
    for key in range(6):
        index = key % len(samples)
        streams = [np.random.default_rng([0, key, index]) for _ in range(3)]
        x0, y0 = _legacy_example(samples[index], 96, 400, 150.0, streams[0], AugmentConfig())
        x1, y1 = make_example(samples[index], 96, 400, 150.0, streams[1], AugmentConfig())
        x2, y2 = make_example(samples[index], 96, 400, 150.0, streams[2], off,
                              objects=objects, index=index)
        assert np.array_equal(x0, x1) and np.array_equal(y0, y1)
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
        # and no extra draw was taken from the example's stream
        assert len({s.random() for s in streams}) == 1
    with_objects = GraspDataset(samples, 96, 400, 150.0, off, seed=2, objects=objects)
    without = GraspDataset(samples, 96, 400, 150.0, AugmentConfig(), seed=2)
    for key in ((0, 1), (3, 2)):
        assert all(torch.equal(a, b) for a, b in zip(with_objects[key], without[key]))


def test_the_mirror_flips_input_and_rectangles_left_right(library):
    samples, _, _ = library
    size = 96
    mirrored_count = 0
    for key in range(8):
        # one rectangle: where rectangles overlap, the later one's angle wins, and the mirrored
        # rasterisation may draw a boundary pixel of the other one
        whole = samples[key % len(samples)]
        sample = CornellSample('one', '', None, '', depth_m=whole.depth_m,
                               grasps=whole.grasps[:1])
        details = {}
        flipped, flipped_grasps = augmented_input(sample, size, 400,
                                                  np.random.default_rng([1, key]),
                                                  AugmentConfig(flip=True), details=details)
        plain, grasps = augmented_input(sample, size, 400, np.random.default_rng([1, key]),
                                        AugmentConfig())
        if not details['mirrored']:
            assert np.array_equal(flipped, plain)
            continue
        mirrored_count += 1
        assert np.array_equal(flipped, plain[:, ::-1])
        for a, b in zip(flipped_grasps, grasps):
            assert a.u == pytest.approx(size - 1 - b.u) and a.v == pytest.approx(b.v)
            assert abs(wrap_angle(a.angle + b.angle)) < 1e-9  # angles mirror
            assert a.width_px == pytest.approx(b.width_px)
        x, y = make_example(sample, size, 400, 150.0, np.random.default_rng([1, key]),
                            AugmentConfig(flip=True))
        x_plain, y_plain = make_example(sample, size, 400, 150.0,
                                        np.random.default_rng([1, key]), AugmentConfig())
        assert np.allclose(x, x_plain[..., ::-1], atol=1e-6)
        mirror = y_plain[:, :, ::-1]
        both = (y[0] > 0) & (mirror[0] > 0)
        assert both.sum() >= 0.9 * max((y[0] > 0).sum(), (mirror[0] > 0).sum())
        assert np.allclose(y[1][both], mirror[1][both], atol=1e-6)  # cos 2phi
        assert np.allclose(y[2][both], -mirror[2][both], atol=1e-6)  # sin 2phi
    assert 0 < mirrored_count < 8


def test_the_same_key_gives_the_same_composited_example(library):
    samples, _, objects = library
    config = AugmentConfig(composite=1.0, flip=True)
    data = GraspDataset(samples, 96, 400, 150.0, config, seed=5, objects=objects)
    fresh = GraspDataset(samples, 96, 400, 150.0, config, seed=5,
                         objects=ObjectLibrary(samples, K, 0.1, 5.0))
    keys = [(2, 1), (0, 3), (1, 0)]
    first = [data[key] for key in keys]
    again = [fresh[key] for key in reversed(keys)][::-1]
    for (xa, ya), (xb, yb) in zip(first, again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # as a data loader worker gets it (the segmentation travels with it)
    copied = pickle.loads(pickle.dumps(data))
    assert all(torch.equal(a, b) for a, b in zip(copied[keys[0]], first[0]))
    details = {}
    augmented_input(samples[1], 96, 400, np.random.default_rng([5, 2, 1]), config,
                    objects=objects, index=1, details=details)
    assert details['pasted']  # that example got objects
    plain = GraspDataset(samples, 96, 400, 150.0, AugmentConfig(flip=True), seed=5)
    assert not torch.equal(plain[(2, 1)][0], first[0][0])


def test_the_options_are_checked():
    with pytest.raises(ValueError, match='probability'):
        AugmentConfig(composite=1.5)
    with pytest.raises(ValueError, match='at least 1'):
        AugmentConfig(composite_max_objects=0)
    assert composite.GT_CENTRE_FRACTION is dataset.GT_CENTRE_FRACTION  # one definition


# --- the command line ----------------------------------------------------------------------

def test_train_takes_the_flip_and_composite_options(tmp_path, capsys):
    root = str(tmp_path / 'cornell')
    write_dataset(root, count=4, defects=False)
    init = str(tmp_path / 'small.pt')
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_checkpoint(init, GraspFCN(ModelConfig(input_size=SMALL)))
    out = tmp_path / 'run'
    assert main(['train', '--dataset', root, '--output', str(out), '--epochs', '1',
                 '--batch-size', '2', '--device', 'cpu', '--precision', 'fp32',
                 '--workers', '0', '--threads', '1', '--init', init, '--flip',
                 '--composite', '0.5', '--composite-objects', '3']) == 0
    augment = load_checkpoint(str(out / 'last.pt'))['meta']['train']['augment']
    assert augment['flip'] is True and augment['composite'] == 0.5
    assert augment['composite_max_objects'] == 3
    assert 'compositing: 50 %' in capsys.readouterr().out
    assert main(['train', '--dataset', root, '--output', str(tmp_path / 'no'), '--device',
                 'cpu', '--no-augment', '--flip']) == 2
    assert '--no-augment' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['train', '--dataset', root, '--output', str(tmp_path / 'no'), '--composite',
              '1.5'])
