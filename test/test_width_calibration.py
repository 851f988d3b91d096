"""The width calibration: fitted on labelled images, stored in the checkpoint or its model card,
read by post-processing, carried through ensembles and exports."""

import json
import os

import numpy as np
import pytest
import torch

from grasp_fcn_ros import cli
from grasp_fcn_ros.core.backends import create_backend
from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.ensemble import AveragedBackend
from grasp_fcn_ros.core.export import model_digest
from grasp_fcn_ros.core.geometry import CropTransform
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.jaws import JawConfig
from grasp_fcn_ros.core.model import (
    load_checkpoint,
    load_model,
    ModelConfig,
    rewrite_checkpoint,
    save_checkpoint,
    update_model_card,
)
from grasp_fcn_ros.training.dataset import CornellSample, ground_truth_maps, transform_grasps
from grasp_fcn_ros.training.evaluate import evaluate, fit_width_scale, spread, WIDTH_SCALES

from scenes import box_on_plane
from synthetic_cornell import write_dataset

MAX_WIDTH_PX = 150.0
CV = DetectorConfig(scale_mode='pixels', jaws=JawConfig(enabled=False))


class TruthBackend:
    """Outputs each sample's own training targets, its width map times ``width_factor``: a
    network that places and turns every grasp right and reads every opening too wide."""

    name, device = 'truth', 'cpu'

    def __init__(self, samples, width_factor, width_scale=1.0):
        self.config = ModelConfig(max_width_px=MAX_WIDTH_PX, width_scale=width_scale)
        self.maps = {}
        for sample in samples:
            transform = CropTransform.centred(640, 480, 400, 400)
            maps = ground_truth_maps(transform_grasps(sample.grasps,
                                                      transform.affine_to_network()),
                                     400, MAX_WIDTH_PX)
            maps[3] *= width_factor
            self.maps[self._key(sample.depth_m, transform)] = maps

    @staticmethod
    def _key(depth_m, transform):
        from grasp_fcn_ros.core.preprocess import prepare_input
        return prepare_input(depth_m, transform).tobytes()

    def predict(self, batch):
        return self.maps[np.ascontiguousarray(batch[0, 0]).tobytes()][None]


def boxes(count=4):
    samples = []
    for i in range(count):
        box = (250 + 15 * i, 200 + 5 * i, 40 + 5 * i, 60)
        u0, v0, w, h = box
        grasp = Grasp2D(u0 + w / 2, v0 + h / 2, 0.0, w + 20.0, jaw_px=20.0)
        samples.append(CornellSample(f'pcd01{i:02d}', '', None, '',
                                     depth_m=box_on_plane(box=box), grasps=[grasp]))
    return samples


def test_a_network_reading_openings_too_wide_is_calibrated_down():
    samples = boxes()
    detector = GraspDetector(TruthBackend(samples, width_factor=1.6), CV)
    best, scores = fit_width_scale(detector, samples)
    assert set(scores) == set(WIDTH_SCALES)
    assert 0.5 <= best <= 0.75  # 1 / 1.6 = 0.625, give or take the IoU's tolerance
    assert scores[best] == 1.0 and scores[1.0] < 1.0
    # the fit is a reading of the same maps: the calibrated detector scores as the fit said
    calibrated = GraspDetector(TruthBackend(samples, 1.6, width_scale=best), CV)
    result = evaluate(calibrated, samples)
    assert np.mean(list(result.accuracy.values())) == scores[best]


def test_a_network_reading_openings_right_keeps_its_widths():
    samples = boxes()
    best, scores = fit_width_scale(GraspDetector(TruthBackend(samples, 1.0), CV), samples)
    assert best == 1.0 and scores[1.0] == 1.0  # equal scores: the one nearest 1.0


def test_fit_width_scale_reads_at_most_max_images_spread_over_the_list():
    samples = boxes(6)
    backend = TruthBackend(samples, width_factor=1.6)
    read = []
    predict = backend.predict
    backend.predict = lambda batch: read.append(batch.tobytes()) or predict(batch)
    best, scores = fit_width_scale(GraspDetector(backend, CV), samples, max_images=3)
    assert len(read) == 3  # the network once per image read; the candidates reuse its maps
    expected = [TruthBackend._key(samples[i].depth_m, CropTransform.centred(640, 480, 400, 400))
                for i in (0, 2, 5)]  # the first, the middle, the last
    assert sorted(read) == sorted(expected)
    assert 0.5 <= best <= 0.75 and scores[best] == 1.0
    assert spread(list(range(10)), 3) == [0, 4, 9]


def test_fit_width_scale_needs_images():
    with pytest.raises(ValueError):
        fit_width_scale(GraspDetector(TruthBackend([], 1.0), CV), [])


def test_the_detector_reads_widths_through_the_calibration():
    samples = boxes(1)
    widths = {}
    for scale in (1.0, 0.5):
        detection = GraspDetector(TruthBackend(samples, 1.0, width_scale=scale), CV).detect(
            samples[0].depth_m)
        widths[scale] = detection.grasps_2d[0].width_px
    assert widths[0.5] == pytest.approx(0.5 * widths[1.0], rel=1e-5)
    assert widths[1.0] == pytest.approx(samples[0].grasps[0].width_px, abs=1.0)


def test_checkpoints_keep_their_calibration_and_the_card_fills_in_for_old_ones(
        random_model_path, tmp_path):
    old = str(tmp_path / 'old.pt')
    payload = load_checkpoint(random_model_path)
    payload['config'].pop('width_scale', None)  # as written before calibrations existed
    torch.save(payload, old)
    assert load_model(old)[0].config.width_scale == 1.0
    update_model_card(old, {'width_scale': 0.7, 'width_scale_source': 'test'})
    assert load_model(old)[0].config.width_scale == 0.7
    card = json.loads(open(str(tmp_path / 'old.json')).read())
    assert card['width_scale'] == 0.7 and card['width_scale_source'] == 'test'
    # a calibration in the checkpoint wins over the card's
    new = str(tmp_path / 'new.pt')
    rewrite_checkpoint(old, new, {'width_scale': 0.8}, {'width_scale_source': 'fit'})
    model, meta = load_model(new)
    assert model.config.width_scale == 0.8 and meta['width_scale_source'] == 'fit'
    # the weights are untouched, the stored precision too, and the exports stay valid
    half = str(tmp_path / 'half.pt')
    save_checkpoint(half, load_model(random_model_path)[0], half=True)
    before = model_digest(load_model(half)[0])
    rewrite_checkpoint(half, half, {'width_scale': 0.9})
    state = load_checkpoint(half)['state_dict']
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert model_digest(load_model(half)[0]) == before


def test_an_ensemble_brings_its_members_widths_to_the_first_members_calibration():
    samples = boxes(1)
    a = TruthBackend(samples, 1.0, width_scale=1.0)
    b = TruthBackend(samples, 2.0, width_scale=0.5)  # reads right once calibrated
    averaged = AveragedBackend([a, b])
    assert averaged.config.width_scale == 1.0
    x = next(iter(a.maps))
    out = averaged.predict(np.frombuffer(x, np.float32).reshape(1, 1, 400, 400))
    np.testing.assert_allclose(out[0, 3], a.maps[x][3], atol=1e-6)


def test_cli_calibrate_writes_a_checkpoint_and_a_card(random_model_path, tmp_path, capsys):
    data = str(tmp_path / 'data')
    write_dataset(data, count=3, defects=False)
    out = str(tmp_path / 'calibrated.pt')
    model = str(tmp_path / 'model.pt')
    rewrite_checkpoint(random_model_path, model, {})
    assert cli.main(['calibrate', '--dataset', data, '--model', model, '--output', out,
                     '--card', '--backend', 'torch', '--precision', 'fp32']) == 0
    printed = capsys.readouterr().out
    assert 'width_scale  mean top-1' in printed and '<- best' in printed
    scale = load_model(out)[0].config.width_scale
    assert scale in WIDTH_SCALES
    card = json.loads(open(os.path.splitext(model)[0] + '.json').read())
    assert card['width_scale'] == scale and '3 images' in card['width_scale_source']
    with pytest.raises(SystemExit):
        cli.main(['calibrate', '--dataset', data, '--model', model])


def test_exported_backends_carry_the_calibration(random_model_path, tmp_path):
    pytest.importorskip('onnxruntime')
    path = str(tmp_path / 'calibrated.pt')
    rewrite_checkpoint(random_model_path, path, {'width_scale': 0.75})
    backend = create_backend(path, 'onnxruntime', 'cpu', 'fp32', cache_dir=str(tmp_path))
    assert backend.config.width_scale == 0.75


def test_the_node_says_at_start_up_how_it_reads_widths():
    from grasp_fcn_ros.node import GraspDetectorNode

    described = GraspDetectorNode._describe_backend(TruthBackend([], 1.0, width_scale=0.7))
    assert "widths read x 0.7 (the model's width calibration)" in described
    assert 'widths read' not in GraspDetectorNode._describe_backend(TruthBackend([], 1.0))
