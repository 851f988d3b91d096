"""Figures and JSON of detections and evaluations, for people (never imported by the node).

Figures are drawn with matplotlib's object API on an Agg canvas created inside each function,
so nothing here touches pyplot or the process-wide backend. Every panel is in **source-image
pixels** (``u`` right, ``v`` down): the network's maps are placed on the source image through
the detection's :class:`~grasp_fcn_ros.core.geometry.CropTransform`.
"""

import os

import numpy as np

from .core.grasp import angle_difference, grasp_matches, polygon_iou
from .figure_canvas import agg_figure, save_png
from .training.evaluate import MAX_ANGLE_RAD

#: Quality below which the angle map is masked (shown grey): the angle means nothing there.
ANGLE_MASK_QUALITY = 0.1
#: Colours: the best grasp, the other grasps, ground-truth rectangles, a wrong prediction.
BEST_COLOUR = '#00e676'
OTHER_COLOUR = '#ffab00'
TRUTH_COLOUR = '#2979ff'
WRONG_COLOUR = '#ff1744'
#: Candidates the jaw clearance check dropped.
REJECTED_COLOUR = '#9e9e9e'
#: Jaccard threshold whose top-1 outcome sorts evaluation images into right and wrong.
FIGURE_JACCARD = 0.25
#: Source pixels shown around the rectangles of an evaluation figure.
EVAL_MARGIN_PX = 60


def _label_axes(ax):
    ax.set_xlabel('u (source px)')
    ax.set_ylabel('v (source px)')


def _source_extent(transform):
    """imshow extent (left, right, bottom, top) of a network-resolution map in source pixels."""
    x0, y0, size = transform.x0, transform.y0, transform.size
    return (x0 - 0.5, x0 + size - 0.5, y0 + size - 0.5, y0 - 0.5)


def _zoom_to(ax, extent):
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])


def _background(ax, depth_m, color):
    """Show the colour image (RGB or grey), or the depth in grey when there is none."""
    height, width = depth_m.shape
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    if color is not None:
        image = np.asarray(color)
        ax.imshow(image, cmap='gray' if image.ndim == 2 else None, extent=extent,
                  interpolation='nearest')
    else:
        low, high = _depth_range(depth_m)
        ax.imshow(depth_m, cmap='gray_r', vmin=low, vmax=high, extent=extent,
                  interpolation='nearest')


def _depth_range(depth_m, window=None):
    """Robust display range (2nd-98th percentile) of the valid depth, metres."""
    values = np.asarray(depth_m if window is None else window, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [2, 98])
    return float(low), float(max(high, low + 1e-3))


def draw_grasp(ax, grasp, colour, label=None, linewidth=1.5, jaw_width=3.5):
    """Draw a grasp rectangle: thin lines along the opening, thick jaws, a centre dot.

    :param ax: matplotlib Axes in the grasp's pixel coordinates.
    :param grasp: a :class:`~grasp_fcn_ros.core.grasp.Grasp2D`.
    :param colour: matplotlib colour.
    :param label: text written beside the centre (e.g. the rank).
    """
    p = grasp.polygon()
    # p0 -> p1 and p2 -> p3 run along the opening; p1 -> p2 and p3 -> p0 are the jaws.
    for a, b in ((0, 1), (2, 3)):
        ax.plot(p[[a, b], 0], p[[a, b], 1], color=colour, linewidth=linewidth)
    for a, b in ((1, 2), (3, 0)):
        ax.plot(p[[a, b], 0], p[[a, b], 1], color=colour, linewidth=jaw_width,
                solid_capstyle='butt')
    ax.plot([grasp.u], [grasp.v], marker='o', markersize=3, color=colour)
    if label is not None:
        ax.annotate(str(label), (grasp.u, grasp.v), xytext=(4, -4), textcoords='offset points',
                    color=colour, fontsize=9, fontweight='bold',
                    bbox={'boxstyle': 'round,pad=0.15', 'facecolor': 'black', 'alpha': 0.5,
                          'linewidth': 0})


def save_detection_figure(path, depth_m, detection, color=None, title=''):
    """Write a 2x2 PNG of one detection: depth, Q map, angle map and the grasps.

    All panels are in source pixels; the three right-hand and lower panels are zoomed to the
    network's crop window (dashed on the depth panel), whose maps are at network resolution.

    :param path: PNG file to write (the folder is created).
    :param depth_m: source depth image (H, W), metres.
    :param detection: a :class:`~grasp_fcn_ros.core.detector.Detection`; its ``grasps_2d``
        (source pixels, best first) are drawn, and in grey the candidates the jaw clearance
        check dropped.
    :param color: optional RGB (H, W, 3) or grey (H, W) uint8 image to draw the grasps on.
    :param title: figure title.
    :returns: the path written.
    """
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    depth_m = np.asarray(depth_m, dtype=np.float32)
    transform = detection.transform
    extent = _source_extent(transform)
    maps = detection.maps
    grasps = list(detection.grasps_2d)
    figure = agg_figure(12, 10)
    axes = figure.subplots(2, 2)

    ax = axes[0, 0]
    low, high = _depth_range(depth_m, transform.crop(depth_m))
    height, width = depth_m.shape
    image = ax.imshow(depth_m, cmap='viridis_r', vmin=low, vmax=high,
                      extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation='nearest')
    figure.colorbar(image, ax=ax, label='depth (m)', shrink=0.85)
    ax.add_patch(Rectangle((extent[0], extent[3]), transform.size, transform.size, fill=False,
                           edgecolor='white', linestyle='--', linewidth=1.2))
    ax.set_title(f'depth (network crop {transform.size} px -> {transform.out_size} px, dashed)')
    _label_axes(ax)

    ax = axes[0, 1]
    image = ax.imshow(maps.quality, cmap='inferno', vmin=0.0, vmax=1.0, extent=extent,
                      interpolation='nearest')
    figure.colorbar(image, ax=ax, label='grasp quality Q', shrink=0.85)
    for rank, grasp in enumerate(grasps, 1):
        ax.plot([grasp.u], [grasp.v], marker='+', markersize=10, markeredgewidth=1.5,
                color=BEST_COLOUR if rank == 1 else OTHER_COLOUR)
    peak = float(np.max(maps.quality)) if maps.quality.size else 0.0
    ax.set_title(f'quality Q (max {peak:.2f}; + = grasps)')
    _zoom_to(ax, extent)
    _label_axes(ax)

    ax = axes[1, 0]
    # twilight is cyclic (-90 and +90 deg are the same grasp, both light), so masked pixels
    # are left transparent over a hatched background rather than painted in a grey.
    ax.add_patch(Rectangle((extent[0], extent[3]), transform.size, transform.size,
                           facecolor='white', edgecolor='#b0b0b0', hatch='//', linewidth=0,
                           zorder=0))
    cmap = colormaps['twilight'].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    angle_deg = np.ma.masked_where(maps.quality < ANGLE_MASK_QUALITY, np.degrees(maps.angle))
    image = ax.imshow(angle_deg, cmap=cmap, vmin=-90.0, vmax=90.0, extent=extent,
                      interpolation='nearest', zorder=1)
    figure.colorbar(image, ax=ax, label='grasp angle (deg)', shrink=0.85,
                    ticks=[-90, -45, 0, 45, 90])
    ax.set_title(f'angle (hatched where Q < {ANGLE_MASK_QUALITY:g})')
    _zoom_to(ax, extent)
    _label_axes(ax)

    ax = axes[1, 1]
    _background(ax, depth_m, color)
    rejected = list(getattr(detection, 'rejected', None) or [])
    for grasp in rejected:  # dropped by the jaw clearance check: grey, thin, under the rest
        draw_grasp(ax, grasp, REJECTED_COLOUR, linewidth=0.8, jaw_width=2.0)
    for rank in range(len(grasps), 0, -1):
        grasp = grasps[rank - 1]
        draw_grasp(ax, grasp, BEST_COLOUR if rank == 1 else OTHER_COLOUR, label=rank,
                   linewidth=2.0 if rank == 1 else 1.2, jaw_width=4.5 if rank == 1 else 3.0)
    if grasps:
        best = grasps[0]
        ax.set_title(f'{len(grasps)} grasps; best (green) q={best.quality:.2f}, '
                     f'{np.degrees(best.angle):.0f} deg, {best.width_px:.0f} px'
                     + (f'; {len(rejected)} refused by jaws (grey)' if rejected else ''))
    else:
        ax.set_title('no grasp above the threshold')
    _zoom_to(ax, extent)
    _label_axes(ax)

    timings = getattr(detection, 'timings_ms', None) or {}
    caption = ', '.join(f'{name} {ms:.1f} ms' for name, ms in timings.items())
    figure.suptitle(f'{title}\n{caption}' if title and caption else (title or caption))
    return save_png(figure, path)


def _rounded(values, digits=6):
    return [round(float(v), digits) for v in np.asarray(values).reshape(-1)]


def detection_to_json(detection):
    """A detection as plain JSON-serialisable types.

    Each grasp has ``u``, ``v`` (source pixels), ``angle_deg``, ``width_px``, ``quality`` and,
    when it was lifted to 3-D, ``position_m``, ``quaternion_xyzw``, ``width_m``, ``depth_m``.

    :param detection: a :class:`~grasp_fcn_ros.core.detector.Detection`.
    :returns: dict with ``grasps`` (best first), ``timings_ms`` and ``crop``.
    """
    poses = {(float(g.u), float(g.v)): g for g in detection.grasps_3d}
    grasps = []
    for rank, grasp in enumerate(detection.grasps_2d, 1):
        item = {'rank': rank, 'u': round(float(grasp.u), 3), 'v': round(float(grasp.v), 3),
                'angle_deg': round(float(np.degrees(grasp.angle)), 3),
                'width_px': round(float(grasp.width_px), 3),
                'quality': round(float(grasp.quality), 6)}
        pose = poses.get((float(grasp.u), float(grasp.v)))
        if pose is not None:
            item.update({'position_m': _rounded(pose.position_m),
                         'quaternion_xyzw': _rounded(pose.quaternion),
                         'width_m': round(float(pose.width_m), 6),
                         'depth_m': round(float(pose.depth_m), 6)})
        grasps.append(item)
    transform = detection.transform
    return {'grasps': grasps,
            'timings_ms': {str(k): round(float(v), 3)
                           for k, v in (detection.timings_ms or {}).items()},
            'crop': {'x0': int(transform.x0), 'y0': int(transform.y0),
                     'size_px': int(transform.size), 'network_px': int(transform.out_size)}}


def _best_match(predicted, truths, jaccard, max_angle_rad):
    """(IoU, angle difference in degrees) of the ground-truth rectangle closest to a grasp.

    A rectangle that the rectangle metric (:func:`~grasp_fcn_ros.core.grasp.grasp_matches`
    with these thresholds) accepts comes first, then the largest IoU.

    :param jaccard: IoU the metric must exceed.
    :param max_angle_rad: angle difference the metric must stay below, radians.
    """
    scored = [(grasp_matches(predicted, [t], jaccard, max_angle_rad),
               polygon_iou(predicted.polygon(), t.polygon()),
               float(np.degrees(angle_difference(predicted.angle, t.angle)))) for t in truths]
    if not scored:
        return None
    return max(scored, key=lambda s: (s[0], s[1]))[1:]


def _evaluation_figure(path, sample, image_result, correct, jaccard, max_angle_rad):
    depth_m = sample.depth_m
    color = sample.load_color()
    truths = sample.grasps or []
    prediction = image_result.predictions[0] if image_result.predictions else None
    figure = agg_figure(7.0, 6.0)
    ax = figure.subplots()
    _background(ax, depth_m, color)
    for truth in truths:
        draw_grasp(ax, truth, TRUTH_COLOUR, linewidth=1.0, jaw_width=2.5)
    corners = [t.polygon() for t in truths]
    verdict = 'CORRECT' if correct else 'WRONG'
    if prediction is not None:
        draw_grasp(ax, prediction, BEST_COLOUR if correct else WRONG_COLOUR,
                   linewidth=2.0, jaw_width=4.5)
        corners.append(prediction.polygon())
        match = _best_match(prediction, truths, jaccard, max_angle_rad)
        detail = '' if match is None else (f'closest truth: IoU {match[0]:.2f}, '
                                           f'angle off {match[1]:.0f} deg')
    else:
        detail = 'no prediction'
    height, width = depth_m.shape
    if corners:
        points = np.concatenate(corners)
        u_min, v_min = points.min(axis=0) - EVAL_MARGIN_PX
        u_max, v_max = points.max(axis=0) + EVAL_MARGIN_PX
        ax.set_xlim(max(u_min, -0.5), min(u_max, width - 0.5))
        ax.set_ylim(min(v_max, height - 0.5), max(v_min, -0.5))
    ax.set_title(f'{sample.name}: top-1 {verdict} (IoU > {jaccard:g}, '
                 f'< {np.degrees(max_angle_rad):.0f} deg)\n'
                 f'{len(truths)} ground-truth rectangles (blue); {detail}', fontsize=10)
    _label_axes(ax)
    return save_png(figure, path)


def save_evaluation_figures(folder, samples, result, limit=12, jaccard=FIGURE_JACCARD,
                            max_angle_rad=MAX_ANGLE_RAD):
    """Write PNGs of right and wrong top-1 predictions against the ground truth.

    Files are ``<name>_correct.png`` and ``<name>_wrong.png``; at most ``limit`` in all, half of
    each kind when both have enough (the paper's Figs. 5 and 6).

    :param folder: output folder (created).
    :param samples: the :class:`~grasp_fcn_ros.training.dataset.CornellSample` list evaluated.
    :param result: the :class:`~grasp_fcn_ros.training.evaluate.EvaluationResult`.
    :param limit: most figures written.
    :param jaccard: the IoU threshold whose top-1 outcome sorts the images (one of the
        result's thresholds).
    :param max_angle_rad: the metric's angle threshold, radians (the one the result used).
    :returns: number of figures written.
    """
    by_name = {s.name: s for s in samples}
    right, wrong = [], []
    for image_result in result.per_image:
        if image_result.name not in by_name:
            continue
        ok = bool(image_result.correct_top1.get(jaccard))
        (right if ok else wrong).append(image_result)
    limit = max(int(limit), 0)
    n_right = min(len(right), max(limit // 2, limit - len(wrong)))
    n_wrong = min(len(wrong), limit - n_right)
    os.makedirs(folder, exist_ok=True)
    written = 0
    for chosen, correct in ((right[:n_right], True), (wrong[:n_wrong], False)):
        for image_result in chosen:
            sample = by_name[image_result.name].load()
            suffix = 'correct' if correct else 'wrong'
            _evaluation_figure(os.path.join(folder, f'{image_result.name}_{suffix}.png'),
                               sample, image_result, correct, jaccard, max_angle_rad)
            written += 1
    return written


def save_scale_plot(path, rows):
    """Top-1 accuracy at Jaccard 0.25 against apparent camera distance, one line per scale
    mode, from :func:`~grasp_fcn_ros.training.evaluate.scale_study` rows."""
    figure = agg_figure(6, 3.6)
    ax = figure.add_subplot()
    labels = {'pixels': 'fixed pixel crop', 'metric': 'metric crop'}
    for mode, style in (('pixels', 'o--'), ('metric', 's-')):
        points = sorted((r['distance_m'], 100 * r['accuracy'][0.25])
                        for r in rows if r['mode'] == mode)
        if points:
            ax.plot(*zip(*points), style, label=labels[mode])
    ax.set_xlabel('apparent camera distance (m)')
    ax.set_ylabel('top-1 accuracy at J 0.25 (%)')
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(figure, path)
