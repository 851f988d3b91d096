"""Metric scale: objects reach the network at the size, in network pixels, it was trained on.

A network trained on one camera at one distance learns objects at one scale: metres per network
pixel at the scene. Another camera, or the same one nearer, shows the same object larger, and a
fixed crop then feeds the network a scale it never saw. In metric mode the crop side in source
pixels follows the focal length and the scene depth so that one network pixel spans the trained
metres::

    side_px = metres_per_pixel * out_size * f_px / z_scene_m

with ``f_px`` the geometric mean of fx and fy and ``z_scene_m`` a robust statistic of the valid
depth in the window (:func:`scene_depth`). The crop stays square, centred (plus the configured
offset) and inside the image; its mapping back to source pixels is the exact
:class:`~.geometry.CropTransform` of any crop.
"""

import numpy as np

from .depth import invalid_mask, percentile
from .geometry import CropTransform, GeometryError

#: Scene-depth statistics over the valid depth of the window: name -> percentile.
SCENE_DEPTH_STATISTICS = {'median': 50.0, 'lower_quartile': 25.0}
#: Scale modes: ``metric`` (crop from focal length and depth) or ``pixels`` (``crop_size``).
SCALE_MODES = ('metric', 'pixels')
#: Smallest crop side metric mode uses, source pixels.
MIN_CROP_PX = 32
#: Passes of "crop -> scene depth in the crop -> crop side" (the window moves with the side).
METRIC_CROP_PASSES = 2
#: The scene depth statistic of a window of more than SCENE_DEPTH_STRIDE_MIN_PIXELS pixels
#: reads every SCENE_DEPTH_STRIDE_PX-th pixel in each direction (a percentile of a quarter of a
#: frame's pixels moves by well under a millimetre, for a quarter of the time).
SCENE_DEPTH_STRIDE_PX = 2
SCENE_DEPTH_STRIDE_MIN_PIXELS = 128 * 128


def focal_px(intrinsics):
    """The focal length, pixels, that maps metres across the image to pixels: sqrt(fx fy)."""
    return float(np.sqrt(intrinsics.fx * intrinsics.fy))


def scene_depth(depth_m, transform, statistic='median', min_depth_m=0.0, max_depth_m=np.inf):
    """A robust depth of the scene in a crop window: a percentile of its valid depths (read
    every :data:`SCENE_DEPTH_STRIDE_PX` pixels in a large window).

    :param depth_m: source depth image, metres.
    :param transform: the window (:class:`~.geometry.CropTransform`).
    :param statistic: one of :data:`SCENE_DEPTH_STATISTICS`.
    :returns: metres, or None when the window holds no valid depth.
    """
    if statistic not in SCENE_DEPTH_STATISTICS:
        raise ValueError(f"scene depth statistic must be one of "
                         f"{', '.join(SCENE_DEPTH_STATISTICS)}, got '{statistic}'")
    window = transform.crop(np.asarray(depth_m))
    if window.size > SCENE_DEPTH_STRIDE_MIN_PIXELS:
        window = window[::SCENE_DEPTH_STRIDE_PX, ::SCENE_DEPTH_STRIDE_PX]
    values = window[~invalid_mask(window, min_depth_m, max_depth_m)]
    if values.size == 0:
        return None
    return float(percentile(values, SCENE_DEPTH_STATISTICS[statistic]))


def metres_per_pixel(depth_m, transform, intrinsics, statistic='median', min_depth_m=0.0,
                     max_depth_m=np.inf):
    """The scale a crop shows the network: metres per network pixel at the scene depth.

    :returns: metres per network pixel, or None without valid depth in the window.
    """
    z = scene_depth(depth_m, transform, statistic, min_depth_m, max_depth_m)
    if z is None:
        return None
    return z / focal_px(intrinsics) * transform.scale


def metric_crop(depth_m, intrinsics, target_m_per_px, out_size, statistic='median',
                min_depth_m=0.0, max_depth_m=np.inf, offset_x_px=0, offset_y_px=0):
    """The crop that shows the scene at ``target_m_per_px`` metres per network pixel.

    Starts from the largest centred square, then sets the side from the scene depth in the
    current window (:data:`METRIC_CROP_PASSES` times). A side that does not fit the image (or
    is under :data:`MIN_CROP_PX`) is clamped.

    :param depth_m: source depth image (H, W), metres.
    :param intrinsics: the depth image's camera model (its fx, fy).
    :param target_m_per_px: the network's trained scale, metres per network pixel.
    :param out_size: network input side, pixels.
    :returns: ``(transform, wanted_side_px)``: the :class:`~.geometry.CropTransform` and the
        side the scale asked for before clamping (equal to ``transform.size`` when it fitted).
    :raises GeometryError: when the offsets leave no room for a crop.
    """
    height, width = np.asarray(depth_m).shape
    largest = min(width - 2 * abs(int(offset_x_px)), height - 2 * abs(int(offset_y_px)))
    if largest < 1:
        raise GeometryError(f'crop offset ({offset_x_px}, {offset_y_px}) px leaves no room in '
                            f'the {width}x{height} image')
    side = wanted = largest
    for _ in range(METRIC_CROP_PASSES):
        transform = CropTransform.centred(width, height, side, out_size, offset_x_px,
                                          offset_y_px)
        z = scene_depth(depth_m, transform, statistic, min_depth_m, max_depth_m)
        if z is None:
            break
        wanted = int(round(target_m_per_px * out_size * focal_px(intrinsics) / z))
        side = int(min(max(wanted, MIN_CROP_PX), largest))
    transform = CropTransform.centred(width, height, side, out_size, offset_x_px, offset_y_px)
    return transform, wanted
