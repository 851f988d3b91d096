"""Fast training: precision choice, the input pipeline, distributed training and ``--init``.

The runs here train a network of the real architecture at an 80 px input (a checkpoint given
to ``--init`` carries that size), so that an epoch takes seconds.
"""

import csv
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import distributed as dist
import torch.multiprocessing as mp

from grasp_fcn_ros.cli import main
from grasp_fcn_ros.core import devices
from grasp_fcn_ros.core.model import (
    GraspFCN,
    load_checkpoint,
    ModelConfig,
    ModelError,
    save_checkpoint,
)
from grasp_fcn_ros.training import train as train_module
from grasp_fcn_ros.training.dataset import (
    AugmentConfig,
    EpochBatchSampler,
    find_samples,
    GraspDataset,
)
from grasp_fcn_ros.training.distributed import Processes
from grasp_fcn_ros.training.renorm import use_synced_batchnorm
from grasp_fcn_ros.training.train import (
    LOG_FIELDS,
    train,
    TrainConfig,
    training_step,
    WeightAverage,
    wrap_distributed,
)

from synthetic_cornell import write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = 80  # network input side of these tests: 16 x an odd number, as the strides need


@pytest.fixture(autouse=True)
def one_thread():
    # two threads on two cores that other work also uses are many times slower than one
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cornell'))
    write_dataset(root, count=4, defects=False)
    return root


@pytest.fixture(scope='module')
def small_model(tmp_path_factory):
    """A seeded random checkpoint of the architecture at an 80 px input."""
    path = str(tmp_path_factory.mktemp('small') / 'small.pt')
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_checkpoint(path, GraspFCN(ModelConfig(input_size=SMALL)))
    return path


def _config(dataset, out, init, **overrides):
    return TrainConfig(**{**dict(dataset=dataset, output_dir=str(out), epochs=1, batch_size=2,
                                 device='cpu', init=init, workers=0, threads=1,
                                 recalibration_images=4),
                          **overrides})


# --- precision ----------------------------------------------------------------------------

def test_cpu_flags_come_from_the_flags_line(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: Xeon\n'
                       'flags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n')
    flags = devices.cpu_flags(str(cpuinfo))
    assert {'avx512f', 'amx_bf16'} <= flags and 'avx2' not in flags
    assert devices.native_bf16(flags)
    assert devices.native_bf16(frozenset({'avx512f', 'avx512_bf16'}))
    assert not devices.native_bf16(frozenset({'avx2', 'avx512f'}))
    assert devices.cpu_flags(str(tmp_path / 'missing')) == frozenset()


def test_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.setattr(devices, 'native_bf16', lambda flags=None: True)
    assert devices.resolve_precision('auto', 'cpu') == ('bf16', None)
    assert devices.resolve_precision('bf16', 'cpu') == ('bf16', None)
    assert devices.resolve_precision('fp32', 'cpu') == ('fp32', None)
    monkeypatch.setattr(devices, 'native_bf16', lambda flags=None: False)
    assert devices.resolve_precision('auto', 'cpu') == ('fp32', None)
    precision, note = devices.resolve_precision('bf16', 'cpu')
    assert precision == 'fp32' and 'not native' in note and 'amx_bf16' in note
    with pytest.raises(ValueError, match='unknown precision'):
        devices.resolve_precision('fp8', 'cpu')


def test_fp16_without_cuda_is_refused(dataset, tmp_path, capsys):
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        devices.resolve_precision('fp16', 'cpu')
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        train(_config(dataset, tmp_path / 'run', None, precision='fp16'), log=lambda *_: None)
    assert main(['train', '--dataset', dataset, '--output', str(tmp_path / 'cli'),
                 '--device', 'cpu', '--precision', 'fp16']) == 2
    assert 'fp16 needs a CUDA device' in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'run' / 'log.csv')


def test_a_bf16_step_runs_the_forward_in_bf16_and_keeps_fp32_weights():
    torch.manual_seed(0)
    model = GraspFCN(ModelConfig(input_size=SMALL)).train()
    dtypes = []
    model.encoder[0][0].register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, 1, SMALL, SMALL), torch.rand(2, 4, SMALL, SMALL)
    loss, parts = training_step(model, optimiser, x, y, (5.0, 3.0, 4.0), 'bf16')
    training_step(model, optimiser, x, y, (5.0, 3.0, 4.0), 'fp32')
    assert dtypes == [torch.bfloat16, torch.float32]
    assert np.isfinite(loss) and set(parts) == {'quality', 'angle', 'width'}
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize('native', [True, False])
def test_training_takes_bf16_where_native_and_says_when_it_falls_back(
        dataset, small_model, tmp_path, monkeypatch, native):
    monkeypatch.setattr(devices, 'native_bf16', lambda flags=None: native)
    used = []

    def recording_step(*args, **kwargs):
        used.append(args[5])
        return training_step(*args, **kwargs)

    monkeypatch.setattr(train_module, 'training_step', recording_step)
    lines = []
    train(_config(dataset, tmp_path / 'run', small_model, precision='bf16'), log=lines.append)
    assert set(used) == {'bf16' if native else 'fp32'} and len(used) == 2
    fallbacks = [line for line in lines if 'using fp32' in line]
    assert len(fallbacks) == (0 if native else 1)
    payload = load_checkpoint(str(tmp_path / 'run' / 'last.pt'))
    assert payload['meta']['train']['precision'] == 'bf16'
    assert all(v.dtype in (torch.float32, torch.int64) for v in payload['state_dict'].values())


# --- input pipeline -----------------------------------------------------------------------

def test_examples_depend_on_seed_epoch_and_image_only(dataset):
    samples = [s.load() for s in find_samples(dataset)[0]]
    data = GraspDataset(samples, SMALL, 400, 150.0, AugmentConfig(), seed=3)
    forward = [data[(1, i)][0] for i in range(4)]
    backward = [data[(1, i)][0] for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(data[(1, 0)][0], data[(2, 0)][0])  # a new draw every epoch
    assert not torch.equal(data[(1, 0)][0], data[(1, 1)][0])
    plain = GraspDataset(samples, SMALL, 400, 150.0)
    assert torch.equal(plain[(1, 0)][0], plain[(2, 0)][0])  # no augmentation: no draw

    def batches(workers):
        sampler = EpochBatchSampler(4, 2, seed=3)
        loader = train_module._loader(data, sampler, workers, 'cpu')
        out = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            out += [x for x, _ in loader]
        return out

    for a, b in zip(batches(0), batches(2)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('count, batch, world', [(8, 2, 2), (7, 2, 2), (5, 1, 3), (3, 2, 2)])
def test_distributed_batches_together_are_the_single_process_batches(count, batch, world):
    single = EpochBatchSampler(count, batch * world, seed=5)
    ranks = [EpochBatchSampler(count, batch, seed=5, rank=r, world_size=world)
             for r in range(world)]
    for sampler in [single, *ranks]:
        sampler.set_epoch(2)
    whole = list(single)
    shares = [list(r) for r in ranks]
    assert len(whole) == len(single) and all(len(s) == len(whole) for s in shares)
    for k, batch_k in enumerate(whole):
        sizes = {len(share[k]) for share in shares}
        assert len(sizes) == 1  # every process takes the same number of images
        joined = {key for share in shares for key in share[k]}
        assert set(batch_k) <= joined  # padding repeats images, it drops none
        assert len(joined - set(batch_k)) <= -count % world
    assert sorted(key[1] for b in whole for key in b) == list(range(count))
    assert all(key[0] == 2 for b in whole for key in b)


# --- distributed --------------------------------------------------------------------------

def _step(model, data, rank, world, batch):
    """One training step of ``model`` on the first batch of this process's share."""
    sampler = EpochBatchSampler(len(data), batch, seed=1, rank=rank, world_size=world)
    x, y = next(iter(train_module._loader(data, sampler, 0, 'cpu')))
    network = wrap_distributed(model, Processes(rank, world, rank, world), 'cpu')
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    training_step(network, optimiser, x.double(), y.double(), (5.0, 3.0, 4.0))


def _seeded_model():
    # float64: in float32 the rounding of one step's gradients, amplified through some 60
    # BatchNorm layers, moves early weights by ~1e-3 of their step between any two summation
    # orders (native against hand-written BatchNorm in one process, or fp32 against fp64);
    # float64 leaves only the differences that are not rounding
    torch.manual_seed(7)
    return GraspFCN(ModelConfig(input_size=SMALL)).double().train()


def _layer_inputs(dtype):
    """Per-process batches (3 images each, 2 processes) and upstream gradients of one
    BatchNorm layer: channels with different means and spreads, channels last."""
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(6, 5, 7, 9, generator=generator) * torch.arange(1.0, 6.0).view(1, 5, 1, 1)
    x = (x + 3.0).to(dtype).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(6, 5, 7, 9, generator=generator).to(dtype)
    return x, upstream


def _layer_step(layer, x, upstream, dtype):
    """Output, input gradient and parameter gradients of a BatchNorm layer in training (the
    layer float32, the batch of ``dtype``, as under autocast)."""
    x = x.clone().requires_grad_(True)
    y = layer.train()(x)
    (y.float() * upstream.float()).sum().backward()
    return {'y': y.detach().float(), 'grad': x.grad.float(), 'weight': layer.weight.grad,
            'bias': layer.bias.grad, 'mean': layer.running_mean, 'var': layer.running_var}


def _fresh_layer():
    torch.manual_seed(3)
    layer = torch.nn.BatchNorm2d(5)
    torch.nn.init.uniform_(layer.weight, 0.5, 1.5)
    torch.nn.init.uniform_(layer.bias, -1.0, 1.0)
    return layer


def _distributed_rank(rank, world, store, dataset, out):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank,
                            world_size=world)
    try:
        results = {}
        for dtype in (torch.float32, torch.bfloat16):
            x, upstream = _layer_inputs(dtype)
            layer = _fresh_layer()
            use_synced_batchnorm(torch.nn.Sequential(layer))
            share = slice(3 * rank, 3 * rank + 3)
            results[str(dtype)] = _layer_step(layer, x[share], upstream[share], dtype)
        samples = [s.load() for s in find_samples(dataset)[0]]
        data = GraspDataset(samples, SMALL, 400, 150.0, AugmentConfig(), seed=1)
        model = _seeded_model()
        _step(model, data, rank, world, 2)
        results['network'] = model.state_dict()
        torch.save(results, f'{out}.{rank}')
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def distributed_results(dataset, tmp_path_factory):
    """What two processes computed: per-rank results of one BatchNorm layer and of one
    network step (see the tests below)."""
    root = tmp_path_factory.mktemp('distributed')
    out = str(root / 'result')
    mp.spawn(_distributed_rank, args=(2, str(root / 'store'), dataset, out), nprocs=2)
    return [torch.load(f'{out}.{rank}', weights_only=True) for rank in range(2)]


@pytest.mark.parametrize('dtype, tolerance', [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_synced_batchnorm_of_two_processes_is_batchnorm_of_the_whole_batch(
        distributed_results, dtype, tolerance):
    x, upstream = _layer_inputs(dtype)
    expected = _layer_step(_fresh_layer(), x, upstream, dtype)
    ranks = [r[str(dtype)] for r in distributed_results]
    close = dict(rtol=tolerance, atol=tolerance)
    for key in ('y', 'grad'):  # each process holds its three images
        torch.testing.assert_close(torch.cat([r[key] for r in ranks]), expected[key], **close)
    for key in ('mean', 'var'):  # the running statistics of the whole batch, everywhere
        for r in ranks:
            torch.testing.assert_close(r[key], expected[key], **close)
    for key in ('weight', 'bias'):  # local sums: DistributedDataParallel averages them
        torch.testing.assert_close((ranks[0][key] + ranks[1][key]), expected[key], **close)


def test_one_step_of_two_processes_equals_one_step_of_the_whole_batch(
        dataset, distributed_results):
    samples = [s.load() for s in find_samples(dataset)[0]]
    data = GraspDataset(samples, SMALL, 400, 150.0, AugmentConfig(), seed=1)
    model = _seeded_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _step(model, data, 0, 1, 4)
    expected = model.state_dict()
    moved = [k for k in expected if not torch.equal(expected[k], before[k])]
    assert len(moved) > 100  # weights, biases and BatchNorm statistics all moved
    for rank in distributed_results:
        for key, value in expected.items():
            # 1e-4 of a step: Adam's first step, lr * g / (|g| + 1e-8), turns the rounding
            # noise (~1e-13) of gradients that are zero in exact arithmetic (channels dead
            # after ReLU) into changes of ~1e-8; without synchronised BatchNorm some 200
            # tensors differ more
            torch.testing.assert_close(rank['network'][key], value, rtol=1e-7, atol=1e-7,
                                       msg=key)


def _torchrun(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    return subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node',
         '2', '-m', 'grasp_fcn_ros.cli', 'train', *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=timeout)


def test_torchrun_trains_with_two_processes_and_resumes(dataset, small_model, tmp_path):
    run = str(tmp_path / 'run')
    common = ['--dataset', dataset, '--output', run, '--batch-size', '2', '--device', 'cpu',
              '--init', small_model, '--folds', '4', '--fold', '1', '--precision', 'fp32']
    first = _torchrun(*common, '--epochs', '1')
    assert first.returncode == 0, first.stderr[-3000:]
    assert {'best.pt', 'last.pt', 'log.csv', 'summary.json'} <= set(os.listdir(run))
    assert first.stdout.count('"best_epoch"') == 1  # process 0 alone reports
    assert first.stdout.count('x 2 processes') == 1
    second = _torchrun(*common, '--epochs', '2', '--resume')
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'resumed after epoch 0' in second.stdout
    with open(os.path.join(run, 'log.csv')) as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == LOG_FIELDS
    assert [r['epoch'] for r in rows] == ['0', '1'] and rows[0]['val_images'] == '1'
    assert all(float(r['images_per_second']) > 0 for r in rows)
    assert all(0 <= float(r['data_wait']) < 1 for r in rows)
    payload = load_checkpoint(os.path.join(run, 'last.pt'))
    assert payload['meta']['epoch'] == 1 and payload['config']['input_size'] == SMALL



def test_torchrun_trains_a_weight_average_with_synced_batchnorm(dataset, small_model, tmp_path):
    run = str(tmp_path / 'run')
    result = _torchrun('--dataset', dataset, '--output', run, '--batch-size', '2', '--device',
                       'cpu', '--init', small_model, '--folds', '4', '--fold', '1',
                       '--precision', 'fp32', '--epochs', '1', '--ema', '0.9')
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('moving average of the weights (decay 0.9') == 1
    payload = load_checkpoint(os.path.join(run, 'last.pt'))
    raw = payload['meta']['training_state_dict']
    weight = 'encoder.0.0.weight'
    assert not torch.equal(payload['state_dict'][weight], raw[weight])

# --- --init -------------------------------------------------------------------------------

def test_init_starts_from_the_weights_and_architecture_of_a_checkpoint(
        dataset, small_model, tmp_path):
    train(_config(dataset, tmp_path / 'run', small_model, lr=0.0, precision='fp32'),
          log=lambda *_: None)
    start = load_checkpoint(small_model)
    trained = load_checkpoint(str(tmp_path / 'run' / 'last.pt'))
    assert trained['config']['input_size'] == SMALL
    assert trained['config']['metres_per_pixel'] > 0  # the scale of the new training images
    assert trained['meta']['train']['init'] == small_model
    for key, value in start['state_dict'].items():
        if 'running' not in key and 'num_batches' not in key:  # recalibrated statistics
            torch.testing.assert_close(trained['state_dict'][key], value, rtol=0, atol=0)
    with pytest.raises(ModelError, match='not found'):
        train(_config(dataset, tmp_path / 'bad', str(tmp_path / 'missing.pt')),
              log=lambda *_: None)


def test_validating_less_often_leaves_the_weights_alone(dataset, small_model, tmp_path):
    runs = {}
    for every in (1, 2):
        out = tmp_path / f'every{every}'
        train(_config(dataset, out, small_model, epochs=3, folds=2, precision='fp32',
                      validate_every=every), log=lambda *_: None)
        with open(out / 'log.csv') as stream:
            rows = list(csv.DictReader(stream))
        runs[every] = load_checkpoint(str(out / 'last.pt')), rows
    (every_epoch, rows_1), (sparse, rows_2) = runs[1], runs[2]
    for key, value in every_epoch['state_dict'].items():  # the last epoch is validated in both
        torch.testing.assert_close(sparse['state_dict'][key], value, rtol=0, atol=0)
    assert [row['loss'] for row in rows_1] == [row['loss'] for row in rows_2]
    validated = [not math.isnan(float(row['val_accuracy'])) for row in rows_2]
    assert validated == [False, True, True]
    assert all(not math.isnan(float(row['val_accuracy'])) for row in rows_1)


# --- weight average ---------------------------------------------------------------------------

def test_weight_average_follows_its_formula_and_copies_the_batchnorm_buffers():
    torch.manual_seed(0)
    model = GraspFCN(ModelConfig(input_size=SMALL))
    average = WeightAverage(model, 0.9)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            for name, buffer in model.named_buffers():
                if 'running_mean' in name:
                    buffer.add_(1.0)
        average.update(model, step)
        decay = min(0.9, (1.0 + step) / (10.0 + step))  # 0.1, 2/11, 3/12
        for name, p in model.named_parameters():
            expected[name] = decay * expected[name] + (1.0 - decay) * p.detach()
    averaged = dict(average.model.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value, rtol=1e-6, atol=1e-6)
        assert not torch.equal(averaged[name], dict(model.named_parameters())[name])
    for name, buffer in average.model.named_buffers():
        torch.testing.assert_close(buffer, dict(model.named_buffers())[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in average.model.parameters())
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match='decay'):
            WeightAverage(model, bad)


def test_a_run_with_a_weight_average_scores_and_saves_the_average_and_resumes_exactly(
        dataset, small_model, tmp_path):
    class Interrupted(Exception):
        pass

    def interrupt_after_first_epoch(line):
        if line.startswith('epoch 1/'):
            raise Interrupted

    def config(name):
        return _config(dataset, tmp_path / name, small_model, epochs=2, folds=2,
                       precision='fp32', ema=0.9)

    lines = []
    train(config('straight'), log=lines.append)
    assert any('moving average of the weights (decay 0.9' in line for line in lines)
    with pytest.raises(Interrupted):
        train(config('resumed'), log=interrupt_after_first_epoch)
    train(config('resumed'), resume=True, log=lambda *_: None)
    straight = load_checkpoint(str(tmp_path / 'straight' / 'last.pt'))
    resumed = load_checkpoint(str(tmp_path / 'resumed' / 'last.pt'))
    best = load_checkpoint(str(tmp_path / 'straight' / 'best.pt'))
    assert straight['meta']['train']['ema'] == 0.9
    raw = straight['meta']['training_state_dict']
    weight = 'encoder.0.0.weight'
    assert not torch.equal(straight['state_dict'][weight], raw[weight])  # the average is saved
    torch.testing.assert_close(best['state_dict'][weight], straight['state_dict'][weight])
    for key, value in straight['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][key], value, rtol=1e-4, atol=1e-5)
    for key, value in raw.items():
        torch.testing.assert_close(resumed['meta']['training_state_dict'][key], value,
                                   rtol=1e-4, atol=1e-5)


def test_train_refuses_a_decay_outside_zero_to_one(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['train', '--dataset', dataset, '--output', str(tmp_path / 'x'), '--ema', '1.5'])
    assert 'expected a decay in [0, 1)' in capsys.readouterr().err


# --- synthetic scenes -------------------------------------------------------------------------

def test_training_on_synth_output_reduces_the_loss(tmp_path, small_model):
    scenes = tmp_path / 'synth'
    assert main(['synth', '--output', str(scenes), '--count', '4', '--seed', '5',
                 '--objects', '1-2']) == 0
    out = tmp_path / 'run'
    train(_config(str(scenes), out, small_model, epochs=6, augment=None, lr=2e-3),
          log=lambda *_: None)
    with open(out / 'log.csv') as stream:
        losses = [float(row['loss']) for row in csv.DictReader(stream)]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses


def test_synthetic_scenes_are_mixed_into_every_epoch(tmp_path, dataset, small_model):
    lines = []
    summary = train(_config(dataset, tmp_path / 'run', small_model, synthetic=3,
                            synthetic_seed=2), log=lines.append)
    real = len(find_samples(dataset)[0])
    assert any('with 3 synthetic scenes (seed 2)' in line
               and f'{real + 3} training examples' in line for line in lines), lines
    assert os.path.isfile(summary['last'])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('workers', [0, 2])
def test_a_cuda_run_trains_and_saves_a_checkpoint_any_machine_loads(
        dataset, small_model, tmp_path, workers):
    out = tmp_path / 'run'
    summary = train(_config(dataset, out, small_model, device='cuda', precision='auto',
                            epochs=4, workers=workers, augment=None, lr=2e-3),
                    log=lambda *_: None)
    with open(out / 'log.csv') as stream:
        losses = [float(row['loss']) for row in csv.DictReader(stream)]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    checkpoint = torch.load(summary['last'], map_location='cpu', weights_only=True)
    assert all(value.device.type == 'cpu' for value in checkpoint['state_dict'].values())
