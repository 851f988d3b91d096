"""Training: weighted MSE on the grasp maps, Adam, per-epoch checkpoints, resume, k-fold CV.

One process, or several under ``torchrun`` (DistributedDataParallel, see
:mod:`~grasp_fcn_ros.training.distributed`); bf16 / fp16 autocast where the device computes it
natively (:func:`~grasp_fcn_ros.core.devices.resolve_precision`).
"""

import copy
import csv
from dataclasses import asdict, dataclass, field, replace
import json
import math
import multiprocessing
import os
import random
import time

import numpy as np
import torch
from torch.nn import functional as F

from ..core.backends import TorchBackend
from ..core.detector import DetectorConfig, GraspDetector
from ..core.devices import autocast_context, resolve_device, resolve_precision
from ..core.geometry import CameraIntrinsics, CORNELL_INTRINSICS, CropTransform
from ..core.model import (
    GraspFCN,
    HEAD_BN_MIN_SCALE,
    keep_heads_alive,
    load_checkpoint,
    load_model,
    ModelConfig,
    ModelError,
    rewrite_checkpoint,
    save_checkpoint,
)
from ..core.preprocess import DEFAULT_MAX_DEPTH_M, DEFAULT_MIN_DEPTH_M
from ..core.scale import metres_per_pixel
from . import distributed
from .composite import ObjectLibrary
from .dataset import (
    AugmentConfig,
    EpochBatchSampler,
    find_samples,
    GraspDataset,
    JoinedSamples,
    split_folds,
)
from .evaluate import (
    evaluate,
    EvaluationResult,
    fit_width_scale,
    spread,
    WIDTH_FIT_MAX_IMAGES,
)
from .renorm import (
    recalibrate_batchnorm,
    set_renorm_limits,
    use_batch_renorm,
    use_synced_batchnorm,
)

#: Columns of ``log.csv``: ``seconds`` is the whole epoch (training, recalibration,
#: validation, checkpoints), ``train_seconds`` its optimiser steps, ``images_per_second`` the
#: training images through them per second (all processes together) and ``data_wait`` the
#: share of ``train_seconds`` spent waiting for input batches.
LOG_FIELDS = ('epoch', 'loss', 'loss_quality', 'loss_angle', 'loss_width', 'train_accuracy',
              'val_images', 'val_accuracy', 'seconds', 'train_seconds', 'images_per_second',
              'data_wait')

#: Training images (spread over the set) re-scored without augmentation after every epoch, to
#: follow fitting.
MONITOR_IMAGES = 16
#: Most depth frames a run holds in memory. A larger set keeps only its rectangles and reads
#: each frame when it makes an example of it (the same examples; 3,000 synthetic 640x480
#: frames held 3.7 GB and took 20 s to load, their rectangles 2 s; a frame takes about 6 ms
#: to read, beside a training step of hundreds of milliseconds on a CPU).
RESIDENT_DEPTH_FRAMES = 500


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in its checkpoints.

    :param dataset: Cornell root (or one of its folders, or a flat folder).
    :param output_dir: where checkpoints and the log go.
    :param epochs: passes over the training images.
    :param batch_size: images per optimiser step, all processes together: under ``torchrun``
        each of N processes takes ``batch_size / N`` of them (it must divide), so a run
        trains the same model with any number of processes.
    :param lr: Adam learning rate (the peak, with a schedule).
    :param lr_schedule: ``constant``, or ``cosine``: the rate falls from ``lr`` to 0 along a
        half cosine over all optimiser steps of the run.
    :param seed: seeds Python, numpy and torch; also the split, the order of each epoch
        (from ``(seed, epoch)``) and each example's augmentation (from ``(seed, epoch,
        image)``).
    :param split_seed: seeds the split instead of ``seed`` (None: ``seed``): runs of one split
        that differ in everything else, such as the members of an ensemble.
    :param device: ``auto``, ``cpu`` or ``cuda``.
    :param precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``: autocast of the training
        forward (:func:`~grasp_fcn_ros.core.devices.resolve_precision`; ``auto`` takes bf16
        where the CPU or GPU computes it natively, fp16 with a gradient scaler on older GPUs,
        else fp32). The loss, the weights and the checkpoints stay fp32.
    :param workers: data loader worker processes per training process; -1 picks
        (:func:`default_workers`), 0 builds the examples in the training process.
    :param threads: intra-op CPU threads per training process; 0 shares the cores available
        evenly among the processes of the machine (one process: torch's default).
    :param init: checkpoint whose weights (and architecture) training starts from, with a new
        optimiser and schedule; None starts from random weights.
    :param weights: loss weights (quality, angle, width) of the weighted MSE.
    :param folds: number of cross-validation folds (0 = no held-out split).
    :param fold: the test fold of this run.
    :param split: ``image`` or ``object``.
    :param object_map: optional image -> object file for object-wise splits.
    :param crop_size_px: source crop side, as the detector's ``crop_size_px``.
    :param depth_scale: metres per unit of integer depth files.
    :param intrinsics: (fx, fy, cx, cy) pixels of the training images' camera; with the scene
        depth of each image it gives the scale the model records (metres per network pixel).
    :param min_depth_m: nearest usable depth, metres, as the detector's ``min_depth_m``.
    :param max_depth_m: farthest usable depth, metres, as the detector's ``max_depth_m``.
    :param channels_last: train in the channels-last memory format (faster on CPUs).
    :param batch_renorm: train the BatchNorm layers with Batch Renormalization (see
        :mod:`~grasp_fcn_ros.training.renorm`); inference is unchanged.
    :param recalibration_images: with plain BatchNorm, training images (centred crops, as the
        detector sees them, spread evenly over the training set) whose average statistics
        replace the running ones before each evaluation and checkpoint; 0 = keep the running
        averages.
    :param renorm_warmup_steps: optimiser steps over which the renormalisation limits relax.
    :param augment: random crop / zoom / rotation settings (and the left-right mirror and
        the real-data compositing: ``flip``, ``composite``, ``composite_max_objects``), or
        None. Compositing pastes objects of the run's own training images (within a fold,
        that fold's) into each other; the segmentation of the training images runs once
        before the first epoch.
    :param synthetic: synthetic scenes (:mod:`~grasp_fcn_ros.synthetic`, Cornell's camera and
        table view) rendered on the fly, in the data loader's workers (at least two unless
        ``workers`` is set), and mixed into every epoch with the dataset's training images;
        0 = none. The scale, the monitored images
        and the BatchNorm recalibration use the real images only.
    :param synthetic_seed: the seed of those scenes (scene i of a seed is always the same).
    :param ema: decay per optimiser step of an exponential moving average of the weights
        (:class:`WeightAverage`), 0 = off. With it the averaged weights are the run's model:
        recalibrated, validated and written to ``best.pt`` and ``last.pt`` (``last.pt`` keeps
        the optimiser's own weights beside them for ``--resume``).
    :param head_min_scale: after ``init``'s weights are loaded and after every optimiser step,
        the heads' BatchNorm scales are kept at least this large in magnitude
        (:func:`~grasp_fcn_ros.core.model.keep_heads_alive`), so that no head dies; 0 = off.
    :param calibrate_width: after the last epoch, fit the width calibration (``width_scale``,
        :func:`~grasp_fcn_ros.training.evaluate.fit_width_scale`) on the real training images
        and write it into ``best.pt`` and ``last.pt`` (each fitted on its own weights); the run
        itself trains and validates uncalibrated, whatever ``init``'s calibration.
    :param validate_every: recalibrate, validate and update ``best.pt`` every this many epochs
        and after the last one (1 = every epoch). Neither touches the weights or any random
        stream, so the weights after each epoch do not depend on it; in between, ``last.pt``
        (kept every epoch for ``--resume``) holds BatchNorm's running averages.
    """

    dataset: str
    output_dir: str
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-3
    lr_schedule: str = 'cosine'
    seed: int = 0
    split_seed: int = None
    device: str = 'auto'
    precision: str = 'auto'
    workers: int = -1
    threads: int = 0
    init: str = None
    weights: tuple = (5.0, 3.0, 4.0)
    folds: int = 0
    fold: int = 0
    split: str = 'image'
    object_map: str = None
    crop_size_px: int = 400
    depth_scale: float = 0.001
    intrinsics: tuple = (CORNELL_INTRINSICS.fx, CORNELL_INTRINSICS.fy, CORNELL_INTRINSICS.cx,
                         CORNELL_INTRINSICS.cy)
    min_depth_m: float = DEFAULT_MIN_DEPTH_M
    max_depth_m: float = DEFAULT_MAX_DEPTH_M
    channels_last: bool = True
    batch_renorm: bool = False
    recalibration_images: int = 32
    renorm_warmup_steps: int = 200
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: int = 0
    synthetic_seed: int = 1
    ema: float = 0.0
    head_min_scale: float = HEAD_BN_MIN_SCALE
    calibrate_width: bool = True
    validate_every: int = 1

    @property
    def fold_seed(self):
        """The seed of the split: ``split_seed``, or ``seed`` without one."""
        return self.seed if self.split_seed is None else self.split_seed


class WeightAverage:
    """An exponential moving average of a model's weights, updated after each optimiser step.

    With a few dozen training images the weights of one step score held-out images by tens of
    points differently from those of the next few epochs; their running average is a steadier
    model. After step ``t`` (0-based) ``average = d * average + (1 - d) * weights`` with
    ``d = min(decay, (1 + t) / (10 + t))``, so that early averages do not hold on to the
    initial weights. BatchNorm buffers are copied, not averaged: the running statistics are
    recalibrated for the averaged weights before they are used. (On Cornell's image-wise folds,
    with the cosine schedule, the average and the last weights got the same images right; see
    the README.)

    :param model: the trained model; the average starts as a copy of it.
    :param decay: the decay ``d`` in (0, 1).
    """

    def __init__(self, model, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError(f'the weight average decay must be in (0, 1), got {decay}')
        self.decay = float(decay)
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step):
        """Fold the model's weights after optimiser step ``step`` (0-based) into the average."""
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for average, current in zip(self.model.parameters(), model.parameters()):
            average.lerp_(current.detach(), 1.0 - decay)
        for average, current in zip(self.model.buffers(), model.buffers()):
            average.copy_(current)


def grasp_loss(pred, target, weights):
    """Weighted MSE: ``wq * MSE(Q) + wa * (MSE(cos) + MSE(sin)) + ww * MSE(width)``.

    :returns: ``(total, parts)`` with parts a dict of the unweighted terms.
    """
    wq, wa, ww = weights
    quality = F.mse_loss(pred[:, 0], target[:, 0])
    angle = F.mse_loss(pred[:, 1], target[:, 1]) + F.mse_loss(pred[:, 2], target[:, 2])
    width = F.mse_loss(pred[:, 3], target[:, 3])
    total = wq * quality + wa * angle + ww * width
    return total, {'quality': quality.item(), 'angle': angle.item(), 'width': width.item()}


def learning_rate(config, step, total_steps):
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``."""
    if config.lr_schedule == 'constant':
        return config.lr
    if config.lr_schedule == 'cosine':
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * min(step / total_steps, 1.0)))
    raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got '{config.lr_schedule}'")


def training_scale(samples, config, input_size, statistic='median'):
    """The scale the training images show the network: the median over images of metres per
    network pixel at each image's scene depth, in the un-augmented crop (0 without depth)."""
    fx, fy, cx, cy = (float(v) for v in config.intrinsics)
    intrinsics = CameraIntrinsics(fx, fy, cx, cy)
    scales = []
    for sample in samples:
        depth_m = sample.read_depth()
        h, w = depth_m.shape
        window = CropTransform.centred(w, h, config.crop_size_px, input_size)
        scale = metres_per_pixel(depth_m, window, intrinsics, statistic, config.min_depth_m,
                                 config.max_depth_m)
        if scale is not None:
            scales.append(scale)
    return float(np.median(scales)) if scales else 0.0


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def split_samples(samples, config):
    """Training and validation samples of a run (validation empty without folds)."""
    if config.folds < 2:
        return list(samples), []
    folds = split_folds(samples, config.folds, config.split, config.fold_seed)
    test = set(folds[config.fold].tolist())
    return ([s for i, s in enumerate(samples) if i not in test],
            [s for i, s in enumerate(samples) if i in test])


def _validation_detector(model, config, device):
    """The detector validation scores a run's model with (the fixed crop, no jaw check)."""
    return GraspDetector(TorchBackend(model, device, channels_last=config.channels_last),
                         DetectorConfig(crop_size_px=config.crop_size_px,
                                        min_depth_m=config.min_depth_m,
                                        max_depth_m=config.max_depth_m))


def validate(model, samples, config, device):
    """Top-1 accuracy at Jaccard 0.25 of the model on samples, through the detector path."""
    result = evaluate(_validation_detector(model, config, device), samples)
    model.train()
    return result


def calibrate_checkpoints(paths, samples, config, device, log=print):
    """Fit the width calibration of checkpoints holding the same weights on (training) samples,
    once, and write it into each file.

    :param paths: checkpoint files; the weights are read from the first.
    :returns: the fitted ``width_scale``.
    """
    model, _ = load_model(paths[0])
    model = model.to(device)
    best, scores = fit_width_scale(_validation_detector(model, config, device), samples)
    used = min(len(samples), WIDTH_FIT_MAX_IMAGES)
    of = f'{used} of the {len(samples)}' if used < len(samples) else f'the {used}'
    source = (f'fitted on {of} training images after training: mean top-1 over '
              f'J 0.25-0.40 {100 * scores[best]:.2f} % against {100 * scores[1.0]:.2f} % '
              'uncalibrated')
    for path in paths:
        rewrite_checkpoint(path, path, {'width_scale': best}, {'width_scale_source': source})
    log(f"{', '.join(os.path.basename(p) for p in paths)}: width calibration {best:g} "
        f'({source})')
    return best


def default_workers(device, cores):
    """Data loader workers per training process when ``--workers`` is not given.

    Building an example takes about 5 ms of one core against about 150 ms of training per
    image on a CPU, so on a CPU a worker would mostly take a core from the optimiser step: none
    below 8 cores per process, 2 above. A GPU trains far faster than one core builds examples:
    up to 8 workers, leaving a core to the training process.

    :param device: the run's torch device name.
    :param cores: CPU cores of this process.
    """
    if torch.device(device).type == 'cuda':
        return min(8, max(1, cores - 1))
    return 0 if cores < 8 else 2


def _loader(dataset, sampler, workers, device):
    """Batches of ``dataset`` in the order of ``sampler``; pinned host memory on CUDA.

    Workers are started from a fork server, not forked from this process: a process whose
    thread pools are running (OpenMP, OpenVINO's TBB) can crash when forked.
    """
    context = None
    if workers > 0 and 'forkserver' in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context('forkserver')
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers,
        pin_memory=torch.device(device).type == 'cuda', persistent_workers=workers > 0,
        multiprocessing_context=context)


def training_step(network, optimiser, x, y, weights, precision='fp32', scaler=None):
    """One optimiser step: the forward under the precision's autocast, the loss in fp32.

    :param network: the model (or its DistributedDataParallel wrapper), in train mode.
    :param precision: resolved precision (``fp32``, ``bf16``, ``fp16``).
    :param scaler: a ``torch.amp.GradScaler`` (fp16), or None.
    :returns: ``(loss, parts)`` as :func:`grasp_loss`, loss a float.
    """
    with autocast_context(precision, x.device):
        pred = network(x)
    if pred.dtype in (torch.bfloat16, torch.float16):
        pred = pred.float()
    loss, parts = grasp_loss(pred, y, weights)
    optimiser.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimiser.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
    return loss.item(), parts


def _recalibration_batches(dataset, sampler, device, memory_format):
    """Un-augmented training inputs, batch by batch, for :func:`recalibrate_batchnorm`."""
    for keys in sampler:
        x = torch.stack([dataset[key][0] for key in keys])
        yield x.to(device).contiguous(memory_format=memory_format)


def _model_config(config, train_set):
    """The architecture of a run (``init``'s, or the default) with its training scale."""
    base = ModelConfig()
    if config.init:
        base = ModelConfig.from_dict(load_checkpoint(config.init)['config'])
    return replace(base, metres_per_pixel=training_scale(train_set, config, base.input_size),
                   width_scale=1.0)


def _object_library(config, train_set, log):
    """The segmented objects of the training images when the run composites, else None."""
    augment = config.augment
    if augment is None or augment.composite <= 0:
        return None
    fx, fy, cx, cy = (float(v) for v in config.intrinsics)
    objects = ObjectLibrary(train_set, CameraIntrinsics(fx, fy, cx, cy), config.min_depth_m,
                            config.max_depth_m)
    started = time.perf_counter()
    donors = objects.prepare()
    log(f'compositing: {100 * augment.composite:g} % of the training images get 1 to '
        f'{augment.composite_max_objects} objects of the {donors} training images whose object '
        f'stands out of the table (of {len(train_set)}; segmented in '
        f'{time.perf_counter() - started:.1f} s)')
    return objects


def _initial_weights(model, path):
    try:
        model.load_state_dict(load_checkpoint(path)['state_dict'])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f'{path} does not match the network: {exc}') from exc


def wrap_distributed(model, processes, device):
    """The network a training process steps: the model itself in a single process; under
    distributed training the model with :class:`~grasp_fcn_ros.training.renorm.SyncedBatchNorm2d`
    layers (whole-batch statistics), wrapped in DistributedDataParallel (gradients averaged
    over the processes, process 0's weights and buffers broadcast at the start)."""
    if not processes.distributed:
        return model
    use_synced_batchnorm(model)
    cuda = torch.device(device).type == 'cuda'
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[torch.device(device)] if cuda else None)


class _Threads:
    """Run ``threads`` intra-op threads in a block, then as many as before."""

    def __init__(self, threads):
        self.threads = threads
        self.before = None

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def __exit__(self, *_):
        torch.set_num_threads(self.before)


def train(config, resume=False, progress=None, log=print):
    """Train one model; writes ``last.pt``, ``best.pt`` and ``log.csv`` in ``output_dir``.

    ``best.pt`` is the epoch with the best validation accuracy (the last epoch when there is no
    validation split). With ``resume``, training continues after the epoch stored in
    ``last.pt``; the random streams are derived from (seed, epoch) (the order of the images)
    and (seed, epoch, image) (each image's augmentation), so a resumed run matches an
    uninterrupted one, and neither depends on the number of data loader workers or processes.

    Under ``torchrun`` (:mod:`~grasp_fcn_ros.training.distributed`) every process runs this:
    the model is wrapped in DistributedDataParallel, each process trains on its share of every
    batch (:class:`~grasp_fcn_ros.training.dataset.EpochBatchSampler`), BatchNorm normalises
    with the statistics of the whole batch and the per-epoch recalibration does too
    (:class:`~grasp_fcn_ros.training.renorm.SyncedBatchNorm2d`), so N processes train the
    model one process would. Process 0 alone validates, logs and writes files; the others wait.

    :param progress: optional ``tqdm``-like factory, called as ``progress(total=, desc=)``.
    :returns: dict with the best epoch and accuracy and the paths written.
    """
    processes, device = distributed.start(resolve_device(config.device))
    if not processes.main:
        progress, log = None, lambda *_: None
    threads = torch.get_num_threads()
    if config.threads > 0 or processes.local_world_size > 1:
        threads = distributed.threads_per_process(processes, config.threads)
    with _Threads(threads):
        return _train(config, processes, device, threads, resume, progress, log)


def _train(config, processes, device, threads, resume, progress, log):
    if processes.main:
        os.makedirs(config.output_dir, exist_ok=True)
    if config.batch_size % processes.world_size:
        raise ValueError(f'the batch size ({config.batch_size}) is shared by the '
                         f'{processes.world_size} processes and must be a multiple of their '
                         'number')
    precision, note = resolve_precision(config.precision, device)
    seed_everything(config.seed)
    samples, skipped = find_samples(config.dataset, config.object_map, config.depth_scale)
    if not samples:
        raise FileNotFoundError(f'no Cornell samples under {config.dataset}')
    resident = len(samples) <= RESIDENT_DEPTH_FRAMES
    for s in samples:
        if resident:
            s.load()
        else:
            s.load_grasps()  # each frame is read when an example is made (read_depth)
    bad_rects = sum(s.skipped_rectangles for s in samples)
    samples = [s for s in samples if s.grasps]
    train_set, val_set = split_samples(samples, config)
    workers = config.workers if config.workers >= 0 else default_workers(device, threads)
    if config.synthetic > 0 and config.workers < 0:
        # a scene takes 0.3-0.7 s to render: far more than a step takes per image, so render
        # beside the training rather than in it
        workers = max(workers, 2)
    log(f'{len(train_set)} training / {len(val_set)} validation images '
        f'({skipped} samples without files, {bad_rects} invalid rectangles skipped) '
        f'on {device}' + (f' x {processes.world_size} processes' if processes.distributed
                          else '')
        + f", {precision}, {threads} thread{'s' if threads > 1 else ''} and {workers} data "
        f"worker{'s' if workers != 1 else ''}" + (' per process' if processes.distributed
                                                  else ''))
    if note:
        log(note)
    if not resident:
        log(f'{len(samples)} depth frames, more than {RESIDENT_DEPTH_FRAMES}: each is read from '
            'its file when an example is made, not held in memory')

    model_config = _model_config(config, train_set)
    log(f'training scale: {1e3 * model_config.metres_per_pixel:.3f} mm per network pixel at '
        'the scene depth')
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = GraspFCN(model_config)
    last_path = os.path.join(config.output_dir, 'last.pt')
    best_path = os.path.join(config.output_dir, 'best.pt')
    log_path = os.path.join(config.output_dir, 'log.csv')
    payload = load_checkpoint(last_path) if resume and os.path.isfile(last_path) else None
    if payload is not None:
        model.load_state_dict(payload['meta'].get('training_state_dict',
                                                  payload['state_dict']))
    elif config.init:
        _initial_weights(model, config.init)
        log(f'starting from the weights of {config.init}')
        raised = keep_heads_alive(model, config.head_min_scale)
        if raised:
            log(f"its {', '.join(raised)} head{'s' if len(raised) > 1 else ''} raised to a "
                f'BatchNorm scale of {config.head_min_scale:g} (were dying)')
    model.to(device, memory_format=memory_format)
    renorm_layers = use_batch_renorm(model) if config.batch_renorm else []
    network = wrap_distributed(model, processes, device)
    average = None
    if config.ema > 0:  # copied after wrap_distributed: with its synced BatchNorm layers
        average = WeightAverage(model, config.ema)
        if payload is not None:
            average.model.load_state_dict(payload['state_dict'])
        log(f"the run's model is the moving average of the weights (decay {config.ema} per "
            'step)')
    scored = average.model if average is not None else model  # the run's model
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler('cuda') if precision == 'fp16' else None
    start_epoch, best = 0, {'epoch': -1, 'accuracy': -1.0}
    if payload is not None:
        optimiser.load_state_dict(payload['meta']['optimiser'])
        if scaler is not None and 'scaler' in payload['meta']:
            scaler.load_state_dict(payload['meta']['scaler'])
        start_epoch = int(payload['meta']['epoch']) + 1
        best = dict(payload['meta']['best'])
        log(f'resumed after epoch {start_epoch - 1} (best so far {best})')
    elif processes.main:
        with open(log_path, 'w', newline='') as stream:
            csv.writer(stream).writerow(LOG_FIELDS)

    dataset_args = (model_config.input_size, config.crop_size_px, model_config.max_width_px)
    depth_range = dict(min_depth_m=config.min_depth_m, max_depth_m=config.max_depth_m)
    rank_args = dict(rank=processes.rank, world_size=processes.world_size)
    local_batch = config.batch_size // processes.world_size
    examples = train_set
    if config.synthetic > 0:
        from ..synthetic import SyntheticSamples

        examples = JoinedSamples(train_set, SyntheticSamples(config.synthetic_seed,
                                                             config.synthetic))
        log(f'with {config.synthetic} synthetic scenes (seed {config.synthetic_seed}) rendered '
            f'on the fly: {len(examples)} training examples per epoch')
    objects = _object_library(config, train_set, log)
    dataset = GraspDataset(examples, *dataset_args, config.augment, config.seed, **depth_range,
                           objects=objects)
    sampler = EpochBatchSampler(len(examples), local_batch, config.seed, **rank_args)
    loader = _loader(dataset, sampler, workers, device)
    recalibration = GraspDataset(spread(train_set, config.recalibration_images),
                                 *dataset_args, **depth_range)
    recalibration_sampler = EpochBatchSampler(len(recalibration), local_batch, shuffle=False,
                                              **rank_args)
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * config.epochs
    learning_rate(config, 0, total_steps)  # rejects an unknown schedule before any work
    config_dict = asdict(config)
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 100003 + epoch)
        network.train()
        started = time.perf_counter()
        totals = np.zeros(4)
        images, waited = 0, 0.0
        bar = progress(total=steps_per_epoch, desc=f'epoch {epoch + 1}/{config.epochs}',
                       leave=False) if progress else None
        sampler.set_epoch(epoch)
        asked = time.perf_counter()
        for step, (x, y) in enumerate(loader):
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            waited += time.perf_counter() - asked
            global_step = epoch * steps_per_epoch + step
            set_renorm_limits(renorm_layers, global_step, config.renorm_warmup_steps)
            for group in optimiser.param_groups:
                group['lr'] = learning_rate(config, global_step, total_steps)
            loss, parts = training_step(network, optimiser, x, y, config.weights, precision,
                                        scaler)
            keep_heads_alive(model, config.head_min_scale)
            if average is not None:
                average.update(model, global_step)
            totals += [loss * len(x), parts['quality'] * len(x), parts['angle'] * len(x),
                       parts['width'] * len(x)]
            images += len(x)
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f'{loss:.4f}')
            asked = time.perf_counter()
        if bar:
            bar.close()
        train_seconds = time.perf_counter() - started
        *sums, images, waited, busy = distributed.sum_over_processes(
            [*totals, images, waited, train_seconds], processes, device)
        totals = np.asarray(sums) / images
        images_per_second = images / train_seconds
        data_wait = waited / busy
        checked = (epoch + 1) % max(int(config.validate_every), 1) == 0 \
            or epoch == config.epochs - 1
        if checked and not renorm_layers and config.recalibration_images > 0:
            recalibrate_batchnorm(scored, _recalibration_batches(
                recalibration, recalibration_sampler, device, memory_format))
        if processes.main:
            fit = accuracy = float('nan')
            if checked:
                # with its own threads: lending it those of the waiting processes made
                # validation 5-9x slower under torchrun on a 2-core CPU
                fit = validate(scored, spread(train_set, MONITOR_IMAGES), config,
                               device).accuracy[0.25]
                if val_set:
                    accuracy = validate(scored, val_set, config, device).accuracy[0.25]
            seconds = time.perf_counter() - started
            meta = {'epoch': epoch, 'train': config_dict, 'val_accuracy': accuracy,
                    'loss': float(totals[0])}
            if checked and (not val_set or accuracy >= best['accuracy']):
                best = {'epoch': epoch, 'accuracy': accuracy if val_set else -1.0}
                save_checkpoint(best_path, scored, dict(meta, best=best))
            state = dict(meta, best=best, optimiser=optimiser.state_dict())
            if scaler is not None:
                state['scaler'] = scaler.state_dict()
            if average is not None:
                state['training_state_dict'] = {k: v.detach().cpu()
                                                for k, v in model.state_dict().items()}
            save_checkpoint(last_path, scored, state)
            with open(log_path, 'a', newline='') as stream:
                csv.writer(stream).writerow([
                    epoch, *[f'{v:.6f}' for v in totals], f'{fit:.4f}', len(val_set),
                    f'{accuracy:.4f}', f'{seconds:.1f}', f'{train_seconds:.1f}',
                    f'{images_per_second:.2f}', f'{data_wait:.3f}'])
            log(f'epoch {epoch + 1}/{config.epochs}: loss {totals[0]:.4f} '
                f'(q {totals[1]:.4f} angle {totals[2]:.4f} width {totals[3]:.4f})'
                + (f', train acc@0.25 {100 * fit:.1f} %' if checked else '')
                + (f', val acc@0.25 {100 * accuracy:.1f} %' if val_set and checked else '')
                + f', {seconds:.0f} s ({images_per_second:.2f} images/s, '
                f'{100 * data_wait:.0f} % waiting for data)')
        distributed.barrier(processes)
    summary = {'best_epoch': best['epoch'], 'best_val_accuracy': best['accuracy'],
               'last': last_path, 'best': best_path, 'log': log_path}
    if processes.main and config.calibrate_width and train_set and os.path.isfile(last_path):
        # best.pt holds the last epoch's weights too when that epoch was the best: one fit
        same = best['epoch'] == config.epochs - 1 and os.path.isfile(best_path)
        scale = calibrate_checkpoints([last_path] + ([best_path] if same else []), train_set,
                                      config, device, log)
        summary['width_scale'] = {'last': scale}
        if same:
            summary['width_scale']['best'] = scale
        elif os.path.isfile(best_path):
            summary['width_scale']['best'] = calibrate_checkpoints([best_path], train_set,
                                                                   config, device, log)
    distributed.barrier(processes)
    if processes.main:
        with open(os.path.join(config.output_dir, 'summary.json'), 'w') as stream:
            json.dump(summary, stream, indent=2)
    return summary


def cross_validate(config, resume=False, progress=None, log=print):
    """k-fold cross-validation: one model per fold, trained from scratch, scored on its fold.

    Each fold is scored with its last epoch's weights (no selection on the test fold). Writes
    ``fold_<k>/`` runs and ``cv.json`` with per-fold and mean accuracies in ``output_dir``.
    Under ``torchrun`` the folds train distributed one after the other, and process 0 scores
    them.

    :returns: the ``cv.json`` content (None in processes other than 0).
    """
    if config.folds < 2:
        raise ValueError('cross-validation needs folds >= 2')
    root = config.output_dir
    processes, device = distributed.start(resolve_device(config.device))
    samples, _ = find_samples(config.dataset, config.object_map, config.depth_scale)
    samples = [s for s in samples if s.load_grasps().grasps]
    folds = []
    for k in range(config.folds):
        fold_config = TrainConfig(**{**asdict(config), 'augment': config.augment,
                                     'fold': k, 'output_dir': os.path.join(root, f'fold_{k}')})
        if processes.main:
            log(f'--- fold {k + 1}/{config.folds} ({config.split}-wise) ---')
        train(fold_config, resume=resume, progress=progress, log=log)
        if processes.main:
            _, test = split_samples(samples, fold_config)
            model, _ = load_model(os.path.join(fold_config.output_dir, 'last.pt'))
            result = validate(model, test, fold_config, device)
            folds.append(result)
            log(f'fold {k + 1}: acc@0.25 {100 * result.accuracy[0.25]:.1f} % '
                f'on {result.images} images')
        distributed.barrier(processes)
    if not processes.main:
        return None
    images = sum(r.images for r in folds)
    mean = EvaluationResult(
        images,
        {j: float(np.mean([r.accuracy[j] for r in folds])) for j in folds[0].accuracy},
        {n: float(np.mean([r.top_n[n] for r in folds])) for n in folds[0].top_n}, [])
    summary = {'split': config.split, 'folds': [r.to_json() for r in folds],
               'mean': mean.to_json(), 'epochs': config.epochs,
               'batch_size': config.batch_size, 'seed': config.seed,
               'split_seed': config.fold_seed}
    with open(os.path.join(root, 'cv.json'), 'w') as stream:
        json.dump(summary, stream, indent=2)
    log(f'cross-validation ({config.folds} folds, {config.split}-wise), mean over folds:')
    log(mean.table())
    return summary
