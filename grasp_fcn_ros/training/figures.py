"""Figures of the training augmentation: composited Cornell training examples.

``python -m grasp_fcn_ros.training.figures --cornell ../shared/data/cornell --output docs``
writes ``composite_examples.png``: per example, the network input as the augmentation makes it
without compositing, the same example with objects of other images pasted (the image's own
rectangles in blue, the pasted objects' in orange), and the composited source window as height
above the fitted table (the pasted objects outlined), where an object that floated or sank
would show.
"""

import argparse
import os

import numpy as np

from ..core.geometry import CORNELL_INTRINSICS
from ..core.model import ModelConfig
from ..core.preprocess import DEFAULT_MAX_DEPTH_M, DEFAULT_MIN_DEPTH_M, normalise_input
from ..figure_canvas import agg_figure, save_png
from .composite import ObjectLibrary
from .dataset import AugmentConfig, augmented_input, find_samples

OWN_COLOUR = '#2979ff'
PASTED_COLOUR = '#ff6d00'
#: Heights shown, metres.
HEIGHT_RANGE_M = (-0.02, 0.08)


def _rectangle(ax, grasp, colour):
    corners = grasp.polygon()
    ax.plot(*np.vstack([corners, corners[:1]]).T, color=colour, linewidth=1.0)
    for a, b in ((1, 2), (3, 0)):  # the jaws
        ax.plot(corners[[a, b], 0], corners[[a, b], 1], color=colour, linewidth=2.5,
                solid_capstyle='butt')


def _network_panel(ax, filled, own, pasted, title):
    image = normalise_input(filled)
    low, high = np.percentile(image, [1, 99])
    ax.imshow(image, cmap='gray_r', vmin=low, vmax=high, interpolation='nearest')
    for grasp in own:
        _rectangle(ax, grasp, OWN_COLOUR)
    for grasp in pasted:
        _rectangle(ax, grasp, PASTED_COLOUR)
    size = filled.shape[0]
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def composite_examples(samples, objects, count=5, seed=0, input_size=None, crop_size_px=400,
                       max_objects=2, min_depth_m=DEFAULT_MIN_DEPTH_M,
                       max_depth_m=DEFAULT_MAX_DEPTH_M):
    """Up to ``count`` composited examples of images spread over ``samples``: per image the
    first epoch (of 20) whose example got an object.

    :returns: list of dicts: ``index``, ``plain`` and ``composited`` (``(filled, grasps)``
        of the example without and with compositing), ``details`` (see
        :func:`~grasp_fcn_ros.training.dataset.augmented_input`).
    """
    input_size = input_size or ModelConfig().input_size
    plain_config = AugmentConfig()
    config = AugmentConfig(composite=1.0, composite_max_objects=max_objects)
    examples = []
    for index in np.linspace(0, len(samples) - 1, 4 * count).round().astype(int):
        if objects.scene(int(index)) is None:
            continue
        for epoch in range(20):
            key = [seed, epoch, int(index)]
            details = {}
            composited = augmented_input(samples[index], input_size, crop_size_px,
                                         np.random.default_rng(key), config, min_depth_m,
                                         max_depth_m, objects, int(index), details)
            if details['pasted']:
                plain = augmented_input(samples[index], input_size, crop_size_px,
                                        np.random.default_rng(key), plain_config,
                                        min_depth_m, max_depth_m)
                examples.append({'index': int(index), 'plain': plain,
                                 'composited': composited, 'details': details})
                break
        if len(examples) == count:
            break
    return examples


def composite_figure(path, samples, objects, examples):
    """Draw :func:`composite_examples` (one row each) into a PNG at ``path``."""
    figure = agg_figure(8.4, 2.75 * len(examples))
    axes = figure.subplots(len(examples), 3, squeeze=False)
    for row, example in zip(axes, examples):
        index, details = example['index'], example['details']
        name = samples[index].name
        own_count = len(samples[index].grasps)
        filled, grasps = example['plain']
        _network_panel(row[0], filled, grasps, [], f'{name}: augmented input')
        filled, grasps = example['composited']
        donors = ', '.join(samples[p.donor].name for p in details['pasted'])
        _network_panel(row[1], filled, grasps[:own_count], grasps[own_count:],
                       f'composited: objects of {donors}')
        ax = row[2]
        window = details['window']
        surface = objects.scene(index).surface
        heights = surface.height_map(details['depth_m'], objects.min_depth_m,
                                     objects.max_depth_m)
        x0, y0, side = window.x0, window.y0, window.size
        shown = ax.imshow(heights[y0:y0 + side, x0:x0 + side], cmap='RdBu_r',
                          vmin=HEIGHT_RANGE_M[0], vmax=HEIGHT_RANGE_M[1],
                          extent=(x0 - 0.5, x0 + side - 0.5, y0 + side - 0.5, y0 - 0.5),
                          interpolation='nearest')
        for placed in details['pasted']:
            fh, fw = placed.object_mask.shape
            ax.contour(np.arange(placed.x0, placed.x0 + fw), np.arange(placed.y0, placed.y0 + fh),
                       placed.object_mask.astype(float), [0.5], colors=PASTED_COLOUR,
                       linewidths=0.8)
            for grasp in placed.grasps:
                _rectangle(ax, grasp, PASTED_COLOUR)
        for grasp in samples[index].grasps:
            _rectangle(ax, grasp, OWN_COLOUR)
        ax.set_xlim(x0 - 0.5, x0 + side - 0.5)
        ax.set_ylim(y0 + side - 0.5, y0 - 0.5)
        ax.set_title('height above the fitted table, source window', fontsize=8)
        ax.tick_params(labelsize=6)
        figure.colorbar(shown, ax=ax, shrink=0.8, label='m').ax.tick_params(labelsize=6)
    return save_png(figure, path, colours=128)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cornell', required=True, help='the Cornell dataset folder')
    parser.add_argument('--output', default='docs', help='folder of the figure')
    parser.add_argument('--count', type=int, default=5, help='examples shown')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--objects', type=int, default=2, help='at most this many per example')
    args = parser.parse_args(argv)

    import cv2
    cv2.setNumThreads(1)
    samples, _ = find_samples(args.cornell)
    samples = [s for s in samples if s.load().grasps]
    objects = ObjectLibrary(samples, CORNELL_INTRINSICS, DEFAULT_MIN_DEPTH_M,
                            DEFAULT_MAX_DEPTH_M)
    donors = objects.prepare()
    examples = composite_examples(samples, objects, args.count, args.seed,
                                  max_objects=args.objects)
    path = composite_figure(os.path.join(args.output, 'composite_examples.png'), samples,
                            objects, examples)
    print(f'{donors} of {len(samples)} images have an object to give; wrote {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
