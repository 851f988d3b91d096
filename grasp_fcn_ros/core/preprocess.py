"""The network's input: one preprocessing for the node, detection, evaluation and training.

A source depth image (metres) becomes the network input in three steps, always the same:

1. :func:`fill_window`: cut the square window of a :class:`~.geometry.CropTransform`, mark the
   pixels outside the usable depth range ``[min_depth_m, max_depth_m]`` (and 0 / NaN) invalid,
   inpaint them inside the window only, and resize the window to the network's side
   (:func:`resize_square`: area averaging when shrinking, bilinear when enlarging).
2. Training alone may then rotate the filled window (augmentation).
3. :func:`normalise_input`: subtract the mean depth and clip.

:func:`prepare_input` is steps 1 and 3, what the detector runs on every frame.
"""

import cv2
import numpy as np

from .depth import DepthError, inpaint, invalid_mask, normalise

#: Usable depth range of the detector's defaults, metres (the node's ``min_depth`` and
#: ``max_depth`` parameters).
DEFAULT_MIN_DEPTH_M = 0.1
DEFAULT_MAX_DEPTH_M = 5.0


def resize_square(image, size):
    """Resize a square image to ``size`` x ``size`` pixels.

    Area averaging when shrinking (no aliasing of depth edges), bilinear when enlarging; the
    pixel-centre convention is ``cv2.resize``'s, which :class:`~.geometry.CropTransform` maps.
    """
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def fill_window(depth_m, transform, min_depth_m=DEFAULT_MIN_DEPTH_M,
                max_depth_m=DEFAULT_MAX_DEPTH_M):
    """Crop, mask, inpaint and resize: the window of ``transform`` at network resolution.

    :param depth_m: source depth image (H, W), metres; invalid pixels 0 or NaN.
    :param transform: the :class:`~.geometry.CropTransform` of the network input.
    :param min_depth_m: nearest usable depth, metres; nearer pixels are inpainted.
    :param max_depth_m: farthest usable depth, metres; farther pixels are inpainted.
    :returns: float32 (S, S) depth in metres without invalid pixels, S = ``transform.out_size``.
    :raises DepthError: when the window holds no usable depth.
    """
    crop = transform.crop(np.asarray(depth_m, dtype=np.float32))
    mask = invalid_mask(crop, min_depth_m, max_depth_m)
    if mask.all():
        raise DepthError('no valid depth inside the crop (all pixels NaN, zero or out of '
                         f'range [{min_depth_m}, {max_depth_m}] m)')
    return resize_square(inpaint(crop, mask), transform.out_size)


def normalise_input(filled_m):
    """The network input of a filled window: mean-subtracted, clipped depth (float32).

    :raises DepthError: when the depths are too large to normalise in float32.
    """
    net_input = normalise(filled_m)
    if not np.all(np.isfinite(net_input)):  # float32 overflow of absurd depths (max_depth inf)
        raise DepthError('depth values too large to normalise; set a finite max_depth')
    return net_input


def prepare_input(depth_m, transform, min_depth_m=DEFAULT_MIN_DEPTH_M,
                  max_depth_m=DEFAULT_MAX_DEPTH_M):
    """Crop, inpaint, resize and normalise a source depth image for the network.

    Invalid pixels (0, NaN, or outside ``[min_depth_m, max_depth_m]``) are inpainted inside
    the crop only, which is where the network looks.

    :param depth_m: source depth image, metres (invalid pixels 0 or NaN).
    :param transform: the :class:`~.geometry.CropTransform` of the network input.
    :returns: float32 (S, S) normalised depth.
    :raises DepthError: when the crop holds no valid depth, or depths too large to normalise.
    """
    return normalise_input(fill_window(depth_m, transform, min_depth_m, max_depth_m))
