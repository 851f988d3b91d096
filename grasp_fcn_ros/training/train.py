"""Training: weighted MSE on the grasp maps, Adam, per-epoch checkpoints, resume, k-fold CV."""

import csv
from dataclasses import asdict, dataclass, field
import json
import math
import os
import random
import time

import numpy as np
import torch
from torch.nn import functional as F

from ..core.backends import TorchBackend
from ..core.detector import DetectorConfig, GraspDetector
from ..core.devices import resolve_device
from ..core.geometry import CameraIntrinsics, CORNELL_INTRINSICS, CropTransform
from ..core.model import (
    GraspFCN,
    load_checkpoint,
    load_model,
    ModelConfig,
    save_checkpoint,
)
from ..core.preprocess import DEFAULT_MAX_DEPTH_M, DEFAULT_MIN_DEPTH_M
from ..core.scale import metres_per_pixel
from .dataset import AugmentConfig, find_samples, make_example, split_folds
from .evaluate import evaluate, EvaluationResult
from .renorm import recalibrate_batchnorm, set_renorm_limits, use_batch_renorm

LOG_FIELDS = ('epoch', 'loss', 'loss_quality', 'loss_angle', 'loss_width', 'train_accuracy',
              'val_images', 'val_accuracy', 'seconds')

#: Training images (spread over the set) re-scored without augmentation after every epoch, to
#: follow fitting.
MONITOR_IMAGES = 16


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in its checkpoints.

    :param dataset: Cornell root (or one of its folders, or a flat folder).
    :param output_dir: where checkpoints and the log go.
    :param epochs: passes over the training images.
    :param batch_size: images per optimiser step.
    :param lr: Adam learning rate (the peak, with a schedule).
    :param lr_schedule: ``constant``, or ``cosine``: the rate falls from ``lr`` to 0 along a
        half cosine over all optimiser steps of the run.
    :param seed: seeds Python, numpy and torch; also the split.
    :param device: ``auto``, ``cpu`` or ``cuda``.
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
    :param augment: random crop / zoom / rotation settings, or None.
    """

    dataset: str
    output_dir: str
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-3
    lr_schedule: str = 'cosine'
    seed: int = 0
    device: str = 'auto'
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


def spread(samples, count):
    """Up to ``count`` samples evenly spread over the list (name-sorted samples are grouped by
    object, so a prefix would cover few objects)."""
    if count <= 0 or not samples:
        return []
    count = min(count, len(samples))
    return [samples[i] for i in np.linspace(0, len(samples) - 1, count).round().astype(int)]


def _recalibration_batches(samples, config, model_config, device, memory_format):
    """Un-augmented training inputs, batch by batch, for :func:`recalibrate_batchnorm`."""
    chosen = spread(samples, config.recalibration_images)
    for start in range(0, len(chosen), config.batch_size):
        xs = [make_example(s, model_config.input_size, config.crop_size_px,
                           model_config.max_width_px, min_depth_m=config.min_depth_m,
                           max_depth_m=config.max_depth_m)[0]
              for s in chosen[start:start + config.batch_size]]
        yield torch.from_numpy(np.stack(xs)).to(device).contiguous(memory_format=memory_format)


def training_scale(samples, config, input_size, statistic='median'):
    """The scale the training images show the network: the median over images of metres per
    network pixel at each image's scene depth, in the un-augmented crop (0 without depth)."""
    fx, fy, cx, cy = (float(v) for v in config.intrinsics)
    intrinsics = CameraIntrinsics(fx, fy, cx, cy)
    scales = []
    for sample in samples:
        h, w = sample.depth_m.shape
        window = CropTransform.centred(w, h, config.crop_size_px, input_size)
        scale = metres_per_pixel(sample.depth_m, window, intrinsics, statistic,
                                 config.min_depth_m, config.max_depth_m)
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
    folds = split_folds(samples, config.folds, config.split, config.seed)
    test = set(folds[config.fold].tolist())
    return ([s for i, s in enumerate(samples) if i not in test],
            [s for i, s in enumerate(samples) if i in test])


def _batches(train, config, model_config, epoch):
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(train))
    for start in range(0, len(order), config.batch_size):
        pairs = [make_example(train[i], model_config.input_size, config.crop_size_px,
                              model_config.max_width_px, rng, config.augment,
                              config.min_depth_m, config.max_depth_m)
                 for i in order[start:start + config.batch_size]]
        xs, ys = zip(*pairs)
        yield torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def validate(model, samples, config, device):
    """Top-1 accuracy at Jaccard 0.25 of the model on samples, through the detector path."""
    detector = GraspDetector(TorchBackend(model, device, channels_last=config.channels_last),
                             DetectorConfig(crop_size_px=config.crop_size_px,
                                            min_depth_m=config.min_depth_m,
                                            max_depth_m=config.max_depth_m))
    result = evaluate(detector, samples)
    model.train()
    return result


def train(config, resume=False, progress=None, log=print):
    """Train one model; writes ``last.pt``, ``best.pt`` and ``log.csv`` in ``output_dir``.

    ``best.pt`` is the epoch with the best validation accuracy (the last epoch when there is no
    validation split). With ``resume``, training continues after the epoch stored in
    ``last.pt``; per-epoch random streams are derived from (seed, epoch), so a resumed run
    matches an uninterrupted one.

    :param progress: optional ``tqdm``-like factory, called as ``progress(total=, desc=)``.
    :returns: dict with the best epoch and accuracy and the paths written.
    """
    os.makedirs(config.output_dir, exist_ok=True)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    samples, skipped = find_samples(config.dataset, config.object_map, config.depth_scale)
    if not samples:
        raise FileNotFoundError(f'no Cornell samples under {config.dataset}')
    for s in samples:
        s.load()
    bad_rects = sum(s.skipped_rectangles for s in samples)
    samples = [s for s in samples if s.grasps]
    train_set, val_set = split_samples(samples, config)
    log(f'{len(train_set)} training / {len(val_set)} validation images '
        f'({skipped} samples without files, {bad_rects} invalid rectangles skipped) '
        f'on {device}')

    model_config = ModelConfig(metres_per_pixel=training_scale(train_set, config,
                                                               ModelConfig().input_size))
    log(f'training scale: {1e3 * model_config.metres_per_pixel:.3f} mm per network pixel at '
        'the scene depth')
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = GraspFCN(model_config).to(device, memory_format=memory_format)
    renorm_layers = use_batch_renorm(model) if config.batch_renorm else []
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    last_path = os.path.join(config.output_dir, 'last.pt')
    best_path = os.path.join(config.output_dir, 'best.pt')
    log_path = os.path.join(config.output_dir, 'log.csv')
    start_epoch, best = 0, {'epoch': -1, 'accuracy': -1.0}
    if resume and os.path.isfile(last_path):
        payload = load_checkpoint(last_path)
        model.load_state_dict(payload['state_dict'])
        optimiser.load_state_dict(payload['meta']['optimiser'])
        start_epoch = int(payload['meta']['epoch']) + 1
        best = dict(payload['meta']['best'])
        log(f'resumed after epoch {start_epoch - 1} (best so far {best})')
    else:
        with open(log_path, 'w', newline='') as stream:
            csv.writer(stream).writerow(LOG_FIELDS)

    steps_per_epoch = (len(train_set) + config.batch_size - 1) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    learning_rate(config, 0, total_steps)  # rejects an unknown schedule before any work
    config_dict = asdict(config)
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 100003 + epoch)
        model.train()
        started = time.perf_counter()
        totals = np.zeros(4)
        bar = progress(total=steps_per_epoch, desc=f'epoch {epoch + 1}/{config.epochs}',
                       leave=False) if progress else None
        for step, (x, y) in enumerate(_batches(train_set, config, model_config, epoch)):
            global_step = epoch * steps_per_epoch + step
            set_renorm_limits(renorm_layers, global_step, config.renorm_warmup_steps)
            for group in optimiser.param_groups:
                group['lr'] = learning_rate(config, global_step, total_steps)
            x, y = x.to(device).contiguous(memory_format=memory_format), y.to(device)
            loss, parts = grasp_loss(model(x), y, config.weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            totals += [loss.item() * len(x), parts['quality'] * len(x),
                       parts['angle'] * len(x), parts['width'] * len(x)]
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f'{loss.item():.4f}')
        if bar:
            bar.close()
        totals /= len(train_set)
        if not renorm_layers and config.recalibration_images > 0:
            recalibrate_batchnorm(model, _recalibration_batches(
                train_set, config, model_config, device, memory_format))
        fit = validate(model, spread(train_set, MONITOR_IMAGES), config, device).accuracy[0.25]
        accuracy = float('nan')
        if val_set:
            accuracy = validate(model, val_set, config, device).accuracy[0.25]
        seconds = time.perf_counter() - started
        meta = {'epoch': epoch, 'train': config_dict, 'val_accuracy': accuracy,
                'loss': float(totals[0])}
        if not val_set or accuracy >= best['accuracy']:
            best = {'epoch': epoch, 'accuracy': accuracy if val_set else -1.0}
            save_checkpoint(best_path, model, dict(meta, best=best))
        save_checkpoint(last_path, model,
                        dict(meta, best=best, optimiser=optimiser.state_dict()))
        with open(log_path, 'a', newline='') as stream:
            csv.writer(stream).writerow([epoch, *[f'{v:.6f}' for v in totals], f'{fit:.4f}',
                                         len(val_set), f'{accuracy:.4f}', f'{seconds:.1f}'])
        log(f'epoch {epoch + 1}/{config.epochs}: loss {totals[0]:.4f} '
            f'(q {totals[1]:.4f} angle {totals[2]:.4f} width {totals[3]:.4f})'
            + f', train acc@0.25 {100 * fit:.1f} %'
            + (f', val acc@0.25 {100 * accuracy:.1f} %' if val_set else '')
            + f', {seconds:.0f} s')
    summary = {'best_epoch': best['epoch'], 'best_val_accuracy': best['accuracy'],
               'last': last_path, 'best': best_path, 'log': log_path}
    with open(os.path.join(config.output_dir, 'summary.json'), 'w') as stream:
        json.dump(summary, stream, indent=2)
    return summary


def cross_validate(config, resume=False, progress=None, log=print):
    """k-fold cross-validation: one model per fold, trained from scratch, scored on its fold.

    Each fold is scored with its last epoch's weights (no selection on the test fold). Writes
    ``fold_<k>/`` runs and ``cv.json`` with per-fold and mean accuracies in ``output_dir``.

    :returns: the ``cv.json`` content.
    """
    if config.folds < 2:
        raise ValueError('cross-validation needs folds >= 2')
    root = config.output_dir
    device = resolve_device(config.device)
    samples, _ = find_samples(config.dataset, config.object_map, config.depth_scale)
    samples = [s for s in samples if s.load().grasps]
    folds = []
    for k in range(config.folds):
        fold_config = TrainConfig(**{**asdict(config), 'augment': config.augment,
                                     'fold': k, 'output_dir': os.path.join(root, f'fold_{k}')})
        log(f'--- fold {k + 1}/{config.folds} ({config.split}-wise) ---')
        train(fold_config, resume=resume, progress=progress, log=log)
        _, test = split_samples(samples, fold_config)
        model, _ = load_model(os.path.join(fold_config.output_dir, 'last.pt'))
        result = validate(model, test, fold_config, device)
        folds.append(result)
        log(f'fold {k + 1}: acc@0.25 {100 * result.accuracy[0.25]:.1f} % '
            f'on {result.images} images')
    images = sum(r.images for r in folds)
    mean = EvaluationResult(
        images,
        {j: float(np.mean([r.accuracy[j] for r in folds])) for j in folds[0].accuracy},
        {n: float(np.mean([r.top_n[n] for r in folds])) for n in folds[0].top_n}, [])
    summary = {'split': config.split, 'folds': [r.to_json() for r in folds],
               'mean': mean.to_json(), 'epochs': config.epochs,
               'batch_size': config.batch_size, 'seed': config.seed}
    with open(os.path.join(root, 'cv.json'), 'w') as stream:
        json.dump(summary, stream, indent=2)
    log(f'cross-validation ({config.folds} folds, {config.split}-wise), mean over folds:')
    log(mean.table())
    return summary
