"""Figures and measurements of synthetic scenes against real Cornell frames.

``python -m grasp_fcn_ros.synthetic.figures --cornell ../shared/data/cornell --output docs``
writes ``synthetic_scenes.png`` (scenes with their labels beside Cornell frames with theirs),
``synthetic_sensor_stats.png`` (the statistics the generator and the sensor model are set by)
and ``synthetic_geometry.json`` (the numbers behind them), and with ``--bench N`` measures
scenes per second on one core.
"""

import argparse
import json
import os
import time

import numpy as np

from ..core.geometry import CORNELL_INTRINSICS
from ..figure_canvas import agg_figure, save_png
from ..training.dataset import find_samples
from .generator import SceneConfig
from .samples import render_sample
from .stats import depth_statistics, NOISE_BANDS_M, table_geometry

REAL_COLOUR = '#2979ff'
SYNTH_COLOUR = '#ff6d00'
BIN_COLOUR = '#00a152'
LABEL_COLOUR = '#ff1744'


def _percentiles(values):
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    return {f'p{p}': round(float(np.percentile(values, p)), 4) for p in (0, 5, 50, 95, 100)}


def measure_cornell(samples, intrinsics=CORNELL_INTRINSICS):
    """Geometry, depth statistics and rectangle sizes of loaded Cornell samples."""
    geometry, stats, widths, jaws, widths_m, jaws_m = [], [], [], [], [], []
    for sample in samples:
        sample.load()
        depth = sample.depth_m
        geometry.append(table_geometry(depth, intrinsics))
        stats.append(depth_statistics(depth))
        for g in sample.grasps:
            widths.append(g.width_px)
            jaws.append(g.jaw_px)
            v, u = int(round(g.v)), int(round(g.u))
            z = np.nanmedian(depth[max(v - 2, 0):v + 3, max(u - 2, 0):u + 3])
            widths_m.append(g.width_px * z / intrinsics.fx)
            jaws_m.append(g.jaw_px * z / intrinsics.fx)
    return geometry, stats, {'width_px': widths, 'jaw_px': jaws, 'width_m': widths_m,
                             'jaw_m': jaws_m, 'per_image': [len(s.grasps) for s in samples]}


def measure_synthetic(seed, count, config):
    """Geometry and depth statistics of rendered scenes, and their samples."""
    samples = [render_sample(seed, i, config) for i in range(count)]
    geometry = [table_geometry(s.depth_m, s.intrinsics) for s in samples]
    stats = [depth_statistics(s.depth_m) for s in samples]
    return geometry, stats, samples


def _band_mean(stats):
    """The mean noise of each depth band over frames (NaN where no frame reaches it)."""
    values = np.array([s['noise'] for s in stats])
    count = np.isfinite(values).sum(0)
    return np.where(count > 0, np.nansum(values, 0) / np.maximum(count, 1), np.nan)


def _summary(geometry, stats, height_of):
    keys = ('tilt_deg', 'distance_m', 'height_m', 'roll_deg', 'off_table')
    out = {k: _percentiles([g[k] for g in geometry if g]) for k in keys}
    out['table_row_fraction'] = _percentiles([g['table_row'] / height_of(i)
                                              for i, g in enumerate(geometry) if g])
    out['holes'] = _percentiles([s['holes'] for s in stats])
    noise = _band_mean(stats)
    out['noise_mm_by_depth'] = {f'{b:.1f}': (None if np.isnan(v) else round(float(v), 3))
                                for b, v in zip(NOISE_BANDS_M, noise)}
    return out


def stats_figure(path, real, table, bin_view):
    """The real-against-synthetic statistics: ``real``, ``table`` and ``bin_view`` are
    ``(geometry, stats)`` pairs."""
    figure = agg_figure(13, 7)
    axes = figure.subplots(2, 3)
    sets = (('Cornell (80 real)', real, REAL_COLOUR), ('synthetic, table view', table,
                                                      SYNTH_COLOUR),
            ('synthetic, bin view', bin_view, BIN_COLOUR))

    ax = axes[0, 0]
    for name, (geometry, _), colour in sets:
        g = [x for x in geometry if x]
        ax.scatter([x['tilt_deg'] for x in g], [x['distance_m'] for x in g], s=12,
                   color=colour, alpha=0.7, label=name)
    ax.set_xlabel('table plane from fronto-parallel (deg)')
    ax.set_ylabel('distance along the optical axis (m)')
    ax.set_title('camera pose: plane fit, fx = 585 px for Cornell')
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    bins = np.linspace(0, 1, 21)
    for name, (geometry, _), colour in sets[:2]:
        g = [x for x in geometry if x]
        fractions = [x['table_row_fraction'] for x in g]
        ax.hist(fractions, bins=bins, color=colour, alpha=0.5, density=True, label=name)
    ax.set_xlabel('first table row from the top / image height')
    ax.set_ylabel('density')
    ax.set_title('where the table starts (far edge; above: wall, floor)')
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    for name, (_, stats), colour in sets[:2]:
        values = np.concatenate([s['depth'] for s in stats])
        ax.hist(values, bins=np.linspace(0.3, 3.0, 55), color=colour, alpha=0.5,
                density=True, label=name)
    ax.set_xlabel('depth (m)')
    ax.set_ylabel('density')
    ax.set_title('depth values')
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    for name, (_, stats), colour in sets:
        noise = _band_mean(stats)
        ax.plot(NOISE_BANDS_M + 0.05, noise, marker='o', color=colour, label=name)
    ax.set_xlabel('depth (m)')
    ax.set_ylabel('std of 2nd difference / sqrt 6 (mm)')
    ax.set_title('pixel-scale noise against depth')
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    edges = np.linspace(-15, 15, 121)
    for name, (_, stats), colour in sets[:2]:
        dx = np.concatenate([s['dx_mm'] for s in stats])
        ax.hist(dx, bins=edges, color=colour, alpha=0.5, density=True, label=name,
                histtype='stepfilled')
    ax.set_yscale('log')
    ax.set_xlabel('depth difference of horizontal neighbours (mm)')
    ax.set_ylabel('density')
    ax.set_title('local depth differences')
    ax.legend(fontsize=8)

    ax = axes[1, 2]
    hole_bins = np.linspace(0, 0.2, 21)
    for name, (_, stats), colour in sets:
        ax.hist([s['holes'] for s in stats], bins=hole_bins, color=colour, alpha=0.5,
                label=name)
    ax.set_xlabel('share of pixels without depth')
    ax.set_ylabel('frames')
    ax.set_title('holes (synthetic: half the frames filled)')
    ax.legend(fontsize=8)
    return save_png(figure, path)


def _crop(sample):
    """The square window the network sees of a 640x480 frame (its centred 400 px), or the
    whole frame of other sizes: (x0, x1, y0, y1)."""
    h, w = sample.depth_m.shape
    if (w, h) == (640, 480):
        return 120, 520, 40, 440
    return 0, w, 0, h


def _panel(ax, image, grasps, title, window, depth=False):
    from ..visualize import draw_grasp

    x0, x1, y0, y1 = window
    if depth:
        part = image[y0:y1, x0:x1]
        values = part[np.isfinite(part) & (part > 0)]
        low, high = np.percentile(values, [1, 99]) if values.size else (0, 1)
        ax.imshow(np.where(np.isfinite(image), image, np.nan), cmap='gray_r', vmin=low,
                  vmax=high, interpolation='nearest')
    else:
        ax.imshow(image, interpolation='nearest')
    for g in grasps:
        draw_grasp(ax, g, LABEL_COLOUR, linewidth=0.6, jaw_width=1.8)
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y1 - 0.5, y0 - 0.5)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _kinds(sample):
    return ', '.join(o.shape.kind.replace('_', ' ') for o in sample.scene.objects
                     if o.graspable)


def scenes_figure(path, real_samples, table_samples, bin_samples):
    """Cornell frames with their rectangles beside synthetic scenes with their labels: rows
    of Cornell colour and depth, synthetic table views (depth, then their shaded colour) and
    synthetic bin views. Kinect-size frames are shown in the network's centred window."""
    columns = 4
    figure = agg_figure(12, 14.5)
    axes = figure.subplots(5, columns)
    for k in range(columns):
        s = real_samples[k]
        window = _crop(s)
        _panel(axes[0, k], s.load_color(), s.grasps, f'Cornell {s.name} (colour)', window)
        _panel(axes[1, k], s.depth_m, s.grasps, f'Cornell {s.name} (depth)', window, True)
        t = table_samples[k]
        window = _crop(t)
        title = f'synthetic {t.scene.camera.tilt_deg():.0f} deg: {_kinds(t)}'
        _panel(axes[2, k], t.depth_m, t.grasps, title + ' (depth)', window, True)
        _panel(axes[3, k], t.load_color(), t.grasps, '(shaded)', window)
        b = bin_samples[k]
        i = b.intrinsics
        _panel(axes[4, k], b.load_color(), b.grasps,
               f'synthetic bin {i.width}x{i.height}: {_kinds(b)}', _crop(b))
    return save_png(figure, path, colours=256)


def bench(count, config, seed=1000):
    """Scenes per second of :func:`render_sample` in this process."""
    render_sample(seed, 0, config)
    start = time.perf_counter()
    for i in range(1, count + 1):
        render_sample(seed, i, config)
    return count / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cornell', required=True, help='the Cornell dataset folder')
    parser.add_argument('--output', default='docs', help='folder of the figures')
    parser.add_argument('--count', type=int, default=80, help='synthetic scenes per view')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--bench', type=int, default=0, help='also time this many scenes')
    args = parser.parse_args(argv)

    import cv2
    cv2.setNumThreads(1)
    samples, _ = find_samples(args.cornell)
    real_geometry, real_stats, rectangles = measure_cornell(samples)
    table_config = SceneConfig(view='table', camera='kinect')
    bin_config = SceneConfig(view='bin', camera='realsense')
    table = measure_synthetic(args.seed, args.count, table_config)
    bin_view = measure_synthetic(args.seed + 1, max(args.count // 2, 4), bin_config)
    for geometry, samples_ in ((table[0], table[2]), (bin_view[0], bin_view[2])):
        for g, s in zip(geometry, samples_):
            if g:
                g['table_row_fraction'] = g['table_row'] / s.intrinsics.height
    report = {
        'cornell': _summary(real_geometry, real_stats, lambda i: 480),
        'synthetic_table_view': _summary(table[0], table[1],
                                         lambda i: table[2][i].intrinsics.height),
        'synthetic_bin_view': _summary(bin_view[0], bin_view[1],
                                       lambda i: bin_view[2][i].intrinsics.height),
        'cornell_rectangles': {k: _percentiles(v) for k, v in rectangles.items()},
        'synthetic_rectangles': {
            'width_px': _percentiles([g.width_px for s in table[2] for g in s.grasps]),
            'jaw_px': _percentiles([g.jaw_px for s in table[2] for g in s.grasps]),
            'per_image': _percentiles([len(s.grasps) for s in table[2]])},
    }
    real_geometry = [dict(g, table_row_fraction=g['table_row'] / 480) for g in real_geometry]
    os.makedirs(args.output, exist_ok=True)
    stats_figure(os.path.join(args.output, 'synthetic_sensor_stats.png'),
                 (real_geometry, real_stats), table[:2], bin_view[:2])
    picks = np.linspace(0, len(samples) - 1, 4).astype(int)
    with_grasps = [s for s in table[2] if len(s.grasps) >= 3]
    bins_with = [s for s in bin_view[2] if len(s.grasps) >= 3]
    scenes_figure(os.path.join(args.output, 'synthetic_scenes.png'),
                  [samples[i] for i in picks], with_grasps[:4], bins_with[:4])
    if args.bench:
        report['scenes_per_second'] = {
            'table_view_kinect': round(bench(args.bench, table_config), 2),
            'bin_view_realsense': round(bench(args.bench, bin_config), 2)}
    with open(os.path.join(args.output, 'synthetic_geometry.json'), 'w') as stream:
        json.dump(report, stream, indent=1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
