import csv
import os

import numpy as np
import pytest
import torch

from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.model import (
    GraspFCN,
    HEAD_BN_MIN_SCALE,
    keep_heads_alive,
    load_checkpoint,
    load_model,
    ModelConfig,
    save_checkpoint,
)
from grasp_fcn_ros.training.dataset import find_samples, make_example
from grasp_fcn_ros.training.evaluate import evaluate, JACCARD_THRESHOLDS
from grasp_fcn_ros.training.train import grasp_loss, learning_rate, spread, train, TrainConfig

from synthetic_cornell import write_dataset


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cornell'))
    write_dataset(root, count=3, defects=False)
    return root


class OracleBackend:
    """Returns prepared output maps, one per call, in order."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.config = ModelConfig()

    def predict(self, batch):
        return self.outputs.pop(0)[None]


def test_model_that_outputs_the_ground_truth_scores_100(dataset):
    samples = [s.load() for s in find_samples(dataset)[0]]
    targets = [make_example(s, 400, 400, ModelConfig().max_width_px)[1] for s in samples]
    detector = GraspDetector(OracleBackend(targets), DetectorConfig(crop_size_px=400))
    result = evaluate(detector, samples)
    assert result.images == 3
    assert all(result.accuracy[j] == 1.0 for j in JACCARD_THRESHOLDS)
    assert result.top_n[1] == 1.0 and result.top_n[5] == 1.0
    assert set(result.to_json()) == {'images', 'accuracy', 'top_n'}
    assert set(result.to_json()['accuracy']) == {'0.25', '0.30', '0.35', '0.40'}


def test_model_that_outputs_nothing_scores_0(dataset):
    samples = [s.load() for s in find_samples(dataset)[0]]
    blank = [np.zeros((4, 400, 400), np.float32) for _ in samples]
    result = evaluate(GraspDetector(OracleBackend(blank)), samples)
    assert result.accuracy[0.25] == 0.0


def test_a_few_steps_reduce_the_loss(dataset):
    torch.manual_seed(0)
    samples = [s.load() for s in find_samples(dataset)[0][:2]]
    pairs = [make_example(s, 400, 400, 150.0) for s in samples]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]))
    y = torch.from_numpy(np.stack([p[1] for p in pairs]))
    model = GraspFCN().train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss, _ = grasp_loss(model(x), y, (5.0, 3.0, 4.0))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_loss_weights_combine_the_terms():
    pred = torch.zeros(1, 4, 2, 2)
    target = torch.ones(1, 4, 2, 2)
    total, parts = grasp_loss(pred, target, (5.0, 3.0, 4.0))
    assert parts == {'quality': 1.0, 'angle': 2.0, 'width': 1.0}
    assert total.item() == pytest.approx(5 + 6 + 4)


def test_training_writes_checkpoints_log_and_resumes_identically(dataset, tmp_path):
    def config(out, epochs):
        return TrainConfig(dataset=dataset, output_dir=str(out), epochs=epochs, batch_size=2,
                           seed=3, device='cpu', folds=3, fold=0)

    class Interrupted(Exception):
        pass

    def interrupt_after_first_epoch(line):
        if line.startswith('epoch 1/'):
            raise Interrupted

    quiet = dict(log=lambda *_: None)
    straight = train(config(tmp_path / 'a', 2), **quiet)
    with pytest.raises(Interrupted):  # killed after epoch 1's checkpoint; same schedule
        train(config(tmp_path / 'b', 2), log=interrupt_after_first_epoch)
    train(config(tmp_path / 'b', 2), resume=True, **quiet)
    with open(straight['log']) as stream:
        rows = list(csv.DictReader(stream))
    assert [r['epoch'] for r in rows] == ['0', '1'] and rows[0]['val_images'] == '1'
    assert os.path.isfile(straight['best'])
    a = load_checkpoint(str(tmp_path / 'a' / 'last.pt'))
    b = load_checkpoint(str(tmp_path / 'b' / 'last.pt'))
    assert a['meta']['epoch'] == b['meta']['epoch'] == 1
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=1e-4, atol=1e-5)
    with open(tmp_path / 'b' / 'log.csv') as stream:
        assert len(list(csv.DictReader(stream))) == 2


def test_frames_read_per_example_train_as_frames_held_in_memory(dataset, tmp_path, monkeypatch):
    import grasp_fcn_ros.training.train as train_module

    def run(out):
        lines = []
        train(TrainConfig(dataset=dataset, output_dir=str(out), epochs=1, batch_size=2, seed=5,
                          device='cpu', folds=3, fold=0), log=lines.append)
        return load_checkpoint(str(out / 'last.pt'))['state_dict'], lines

    held, held_log = run(tmp_path / 'held')
    monkeypatch.setattr(train_module, 'RESIDENT_DEPTH_FRAMES', 0)
    read, read_log = run(tmp_path / 'read')
    assert not any('read from its file' in line for line in held_log)
    assert any('3 depth frames, more than 0: each is read from its file' in line
               for line in read_log)
    for key, value in held.items():
        torch.testing.assert_close(read[key], value, rtol=1e-4, atol=1e-5)


def test_cosine_schedule_falls_from_the_peak_to_zero():
    config = TrainConfig(dataset='', output_dir='', lr=1e-3)
    assert learning_rate(config, 0, 100) == pytest.approx(1e-3)
    assert learning_rate(config, 50, 100) == pytest.approx(5e-4)
    assert learning_rate(config, 100, 100) == pytest.approx(0.0, abs=1e-12)
    constant = TrainConfig(dataset='', output_dir='', lr=1e-3, lr_schedule='constant')
    assert learning_rate(constant, 99, 100) == 1e-3
    with pytest.raises(ValueError, match='lr_schedule'):
        learning_rate(TrainConfig(dataset='', output_dir='', lr_schedule='step'), 0, 10)


def test_spread_takes_evenly_spaced_samples():
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread(list(range(3)), 8) == [0, 1, 2]
    assert spread([], 4) == [] and spread([1, 2], 0) == []


def _head_scales(model):
    return [head[1].weight.item() for head in model.heads]


def test_keep_heads_alive_raises_dying_head_scales_and_keeps_their_sign():
    model = GraspFCN(ModelConfig(channels=(2, 2, 2, 2, 2, 2)))
    for head, scale in zip(model.heads, (0.0, -0.001, 0.05, -0.3)):
        head[1].weight.data.fill_(scale)
    assert keep_heads_alive(model, 0.0) == []
    assert keep_heads_alive(model, HEAD_BN_MIN_SCALE) == ['quality', 'cos']
    assert _head_scales(model) == pytest.approx([HEAD_BN_MIN_SCALE, -HEAD_BN_MIN_SCALE, 0.05,
                                                 -0.3])
    assert keep_heads_alive(model) == []


def test_fine_tuning_raises_a_dying_head_of_init_and_keeps_it_up(dataset, tmp_path):
    init = GraspFCN()
    init.heads[2][1].weight.data.fill_(0.001)  # sin: dying, as synthetic pre-training left it
    save_checkpoint(str(tmp_path / 'init.pt'), init)
    lines = []
    train(TrainConfig(dataset=dataset, output_dir=str(tmp_path / 'run'), epochs=1, batch_size=2,
                      device='cpu', init=str(tmp_path / 'init.pt'), calibrate_width=False),
          log=lines.append)
    assert any('its sin head raised to a BatchNorm scale of 0.02' in line
               for line in lines), lines
    model, _ = load_model(str(tmp_path / 'run' / 'last.pt'))
    assert min(abs(s) for s in _head_scales(model)) >= np.float32(HEAD_BN_MIN_SCALE)
