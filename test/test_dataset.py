import numpy as np
import pytest

from grasp_fcn_ros.core.detector import DetectorConfig, prepare_input
from grasp_fcn_ros.core.geometry import CropTransform
from grasp_fcn_ros.core.grasp import Grasp2D, polygon_iou
from grasp_fcn_ros.training.dataset import (
    AugmentConfig,
    find_samples,
    format_rectangles,
    GraspDataset,
    ground_truth_maps,
    load_object_map,
    make_example,
    parse_rectangles,
    split_folds,
)
from grasp_fcn_ros.training.train import TrainConfig, training_scale

from synthetic_cornell import write_dataset


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('cornell')
    truth = write_dataset(str(root), count=5)
    return str(root), truth


def test_loader_round_trips_rectangles(dataset):
    root, truth = dataset
    samples, skipped = find_samples(root)
    assert [s.name for s in samples] == sorted(truth)
    assert skipped == 1  # the depth image without a cpos file
    for sample in samples:
        sample.load()
        assert len(sample.grasps) == len(truth[sample.name])
        for got, want in zip(sample.grasps, truth[sample.name]):
            assert polygon_iou(got.polygon(), want.polygon()) == pytest.approx(1.0, abs=1e-4)
            assert got.width_px == pytest.approx(want.width_px, abs=1e-3)
        assert sample.depth_m.dtype == np.float32 and sample.depth_m.shape == (480, 640)
    assert samples[0].skipped_rectangles == 1


def test_parse_survives_real_defects():
    text = '1 2 \n3 4\n5 6\n7 8 \nNaN 1\n2 2\n3 3\n4 4\n\n9 9\n'
    rects, skipped = parse_rectangles(text)
    assert len(rects) == 1 and skipped == 2
    np.testing.assert_allclose(rects[0], [[1, 2], [3, 4], [5, 6], [7, 8]])
    again, _ = parse_rectangles(format_rectangles(rects))
    np.testing.assert_allclose(again[0], rects[0])


def test_ground_truth_marks_the_centre_third():
    g = Grasp2D(u=100.0, v=60.0, angle=0.0, width_px=60.0, jaw_px=20.0)
    maps = ground_truth_maps([g], 200, max_width_px=150.0)
    q = maps[0]
    assert q[60, 100] == 1.0
    cols = np.flatnonzero(q[60])
    assert 18 <= len(cols) <= 22 and cols.min() >= 89 and cols.max() <= 111
    rows = np.flatnonzero(q[:, 100])
    assert 18 <= len(rows) <= 22
    assert maps[1][60, 100] == pytest.approx(1.0) and maps[2][60, 100] == pytest.approx(0.0)
    assert maps[3][60, 100] == pytest.approx(60 / 150)
    assert maps[0][0, 0] == 0 and maps[3][0, 0] == 0


def test_angle_is_encoded_as_double_angle():
    g = Grasp2D(u=50.0, v=50.0, angle=np.deg2rad(45), width_px=40.0, jaw_px=20.0)
    maps = ground_truth_maps([g], 100, 150.0)
    assert maps[1][50, 50] == pytest.approx(0.0, abs=1e-6)
    assert maps[2][50, 50] == pytest.approx(1.0)


def test_unaugmented_example_is_what_the_detector_sees(dataset):
    root, _ = dataset
    sample = find_samples(root)[0][1].load()
    x, y = make_example(sample, 400, 400, 150.0)
    crop = DetectorConfig().crop_size_px
    transform = CropTransform.centred(640, 480, crop, 400)
    np.testing.assert_allclose(x[0], prepare_input(sample.depth_m, transform), atol=1e-5)
    # the grasps' centres in network pixels carry Q = 1
    for g in sample.grasps:
        u, v = np.round(transform.to_network(g.center)).astype(int)
        assert y[0, v, u] == 1.0


def test_augmentation_keeps_depth_and_rectangles_together(dataset):
    root, _ = dataset
    sample = find_samples(root)[0][0].load()
    rng = np.random.default_rng(3)
    for _ in range(5):
        x, y = make_example(sample, 400, 400, 150.0, rng, AugmentConfig())
        # the Q = 1 region sits on the raised box, nearer than the table
        rows, cols = np.nonzero(y[0])
        assert rows.size > 0
        assert x[0][int(rows.mean()), int(cols.mean())] < np.median(x[0]) - 0.04


def test_training_reads_each_depth_frame_when_it_makes_an_example(dataset):
    # a training set of thousands of frames is not held in memory: only the rectangles are
    # loaded, and each example reads its frame; the examples are those of loaded samples
    root, _ = dataset
    lazy = [s.load_grasps() for s in find_samples(root)[0]]
    loaded = [s.load() for s in find_samples(root)[0]]
    assert all(s.depth_m is None and s.grasps for s in lazy)
    augment = AugmentConfig(flip=True)
    for samples in (lazy, loaded):
        examples = GraspDataset(samples, 400, 400, 150.0, augment, seed=4)
        got = [examples[(1, i)] for i in range(len(samples))]
        if samples is lazy:
            first = got
        else:
            for (x, y), (x_lazy, y_lazy) in zip(got, first):
                assert np.array_equal(x, x_lazy) and np.array_equal(y, y_lazy)
    config = TrainConfig(dataset=root, output_dir=root)
    assert training_scale(lazy, config, 400) == training_scale(loaded, config, 400) > 0
    assert all(s.depth_m is None for s in lazy)
    np.testing.assert_array_equal(lazy[0].read_depth(), loaded[0].depth_m)


def _as_sets(folds):
    return {frozenset(f.tolist()) for f in folds}


def test_image_folds_partition_and_are_seeded():
    samples = list(range(10))
    by_seed = {seed: split_folds(samples, 5, 'image', seed=seed) for seed in range(4)}
    for folds in by_seed.values():
        # a partition: every image in exactly one fold, folds of equal size
        assert sorted(np.concatenate(folds).tolist()) == samples
        assert [len(f) for f in folds] == [2] * 5
    # the same seed gives the same folds; other seeds give other folds
    assert _as_sets(split_folds(samples, 5, 'image', 1)) == _as_sets(by_seed[1])
    assert len({frozenset(_as_sets(folds)) for folds in by_seed.values()}) == len(by_seed)


def test_the_split_seed_keeps_the_folds_when_the_training_seed_changes():
    from grasp_fcn_ros.training.train import split_samples, TrainConfig

    samples = list(range(20))

    def held_out(**seeds):
        return split_samples(samples, TrainConfig(dataset='', output_dir='', folds=5, fold=2,
                                                  **seeds))[1]

    assert held_out(seed=1, split_seed=0) == held_out(seed=0)
    assert held_out(seed=1) != held_out(seed=0)
    assert held_out(seed=3, split_seed=1) == held_out(seed=1)


def test_object_folds_keep_objects_together(dataset, tmp_path):
    root, _ = dataset
    mapping = tmp_path / 'objects.txt'
    mapping.write_text('# image object\npcd0100 a\npcd0101 a\n102, b\n103 c\n104 c\n')
    assert load_object_map(str(mapping))[102] == 'b'
    samples, _ = find_samples(root, str(mapping))
    folds = split_folds(samples, 3, 'object')
    for fold in folds:
        assert len({samples[i].object_id for i in fold}) == 1


def test_object_folds_fall_back_to_contiguous_blocks(dataset):
    samples = find_samples(dataset[0])[0]
    folds = split_folds(samples, 2, 'object')
    assert [f.tolist() for f in folds] == [[0, 1, 2], [3, 4]]


def test_missing_dataset_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_samples(str(tmp_path / 'nope'))
