"""From the network's maps to 2-D grasps: smoothing and thresholded local maxima of Q."""

from dataclasses import dataclass

import cv2
import numpy as np

from .grasp import Grasp2D


@dataclass(frozen=True)
class PostprocessConfig:
    """Peak extraction settings.

    :param q_threshold: smallest smoothed quality a grasp may have, [0, 1].
    :param max_grasps: most grasps returned per image.
    :param min_distance_px: smallest distance between two grasps, network pixels.
    :param q_sigma_px: Gaussian sigma applied to Q, network pixels (0 = none).
    :param angle_sigma_px: Gaussian sigma applied to cos/sin, network pixels (0 = none).
    :param width_sigma_px: Gaussian sigma applied to the width map, network pixels (0 = none).
    :param width_given_quality: read the width as ``width / Q`` (see :class:`NetworkMaps`); off
        by default: the raw width map scored better on held-out images.
    :param width_quality_floor: smallest Q divided by when ``width_given_quality`` is set.
    """

    q_threshold: float = 0.2
    max_grasps: int = 5
    min_distance_px: int = 10
    q_sigma_px: float = 2.0
    angle_sigma_px: float = 2.0
    width_sigma_px: float = 1.0
    width_given_quality: bool = False
    width_quality_floor: float = 0.05


class GraspMaps:
    """Per-pixel grasp maps at network resolution.

    :param quality: Q in [0, 1].
    :param angle: grasp angle, radians.
    :param width_px: gripper opening, network pixels.
    :param score: the map peaks are ranked on (default: ``quality``); see
        :class:`NetworkMaps`.
    """

    def __init__(self, quality, angle, width_px, score=None):
        self.quality = quality
        self.angle = angle
        self.width_px = width_px
        self.score = quality if score is None else score

    def values_at(self, rows, cols):
        """Angle (radians) and width (network pixels) at pixels: two arrays like ``rows``."""
        return self.angle[rows, cols], self.width_px[rows, cols]

    def usable(self):
        """Pixels with a finite angle and width (a grasp may lie only there), or None when
        every pixel has them."""
        return np.isfinite(self.angle) & np.isfinite(self.width_px)


def smooth(image, sigma_px):
    """Gaussian blur (reflecting borders) with a kernel of about 4 sigma each side."""
    if sigma_px <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma_px),
                            borderType=cv2.BORDER_REFLECT)


def _kernel_size(sigma_px):
    # what cv2.GaussianBlur takes for a float image and ksize (0, 0)
    return int(round(sigma_px * 4 * 2 + 1)) | 1


def smooth_at(image, sigma_px, rows, cols, pointwise=None):
    """:func:`smooth`'s value at some pixels only: the same Gaussian and border rule, summed
    over each pixel's neighbourhood (the cost grows with the pixels asked for, not the image).

    :param pointwise: an element-wise function (such as ``np.maximum(x, 0)``) applied to the
        image before it is smoothed, on the pixels read only: ``smooth_at(image, s, r, c, f)``
        equals ``smooth_at(f(image), s, r, c)`` without computing ``f`` over the whole image.
    :returns: float64 array like ``rows``.
    """
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if pointwise is None:
        def pointwise(values):
            return values
    if sigma_px <= 0:
        return pointwise(image[rows, cols]).astype(np.float64)
    size = _kernel_size(sigma_px)
    kernel = cv2.getGaussianKernel(size, float(sigma_px), cv2.CV_32F).ravel().astype(np.float64)
    offsets = np.arange(size) - size // 2
    height, width = image.shape

    def reflect(index, n):  # cv2.BORDER_REFLECT: fedcba|abcdef|fedcba
        period = 2 * n
        index = np.mod(index, period)
        return np.where(index < n, index, period - 1 - index)

    r = reflect(rows[:, None] + offsets, height)  # (K, size)
    c = reflect(cols[:, None] + offsets, width)
    patches = pointwise(image[r[:, :, None], c[:, None, :]]).astype(np.float64)  # (K, s, s)
    return np.einsum('kij,i,j->k', patches, kernel, kernel)


class NetworkMaps(GraspMaps):
    """The maps of a network output (4, H, W: Q, cos 2phi, sin 2phi, width / max), smoothed.

    Q is smoothed over the whole map (peaks are found on it); the angle and width are
    computed where they are read (:meth:`values_at`, at the peaks), the whole maps only when
    asked for (``angle``, ``width_px``, for figures).

    Peaks are ranked on ``score``, the smoothed Q *before* it is capped at 1: a network sure of
    an area outputs Q above 1 over it, and capped, that area would be a flat plateau whose
    maximum falls anywhere on it; uncapped, its centre wins. ``quality`` is the score capped
    to [0, 1].

    The network is trained with a mean squared error against a width map that is zero
    wherever there is no grasp, so where it is unsure whether a pixel is a grasp (Q = p) its
    best width estimate is ``p * width``: uncertain grasps come out too narrow. With
    ``config.width_given_quality`` the width is read as ``width / Q`` (both smoothed alike, Q
    floored at ``config.width_quality_floor``), the width a grasp there
    would have; a network that is sure (Q = 1 on its grasps) is unaffected. Trained for 80
    epochs, the networks of the cross-validation scored better with the raw width map on their
    held-out images (the division widened grasps on small objects past the Jaccard threshold),
    so it is off by default.

    Either way the width is capped at 1.0 (``max_width_px``), the largest the training targets
    hold.

    :param output: float array (4, H, W).
    :param max_width_px: network pixels that a width value of 1.0 stands for.
    :param config: a :class:`PostprocessConfig`.
    """

    def __init__(self, output, max_width_px, config):
        output = np.asarray(output, dtype=np.float32)
        self._output, self._max_width_px, self._config = output, float(max_width_px), config
        self.score = smooth(np.maximum(output[0], 0.0), config.q_sigma_px)
        self.quality = np.minimum(self.score, 1.0)
        self._finite = bool(np.isfinite(output).all())
        self._angle = self._width = None

    def _angle_from(self, cos2, sin2):
        return (0.5 * np.arctan2(sin2, cos2)).astype(np.float32)

    def _width_from(self, width, given):
        if self._config.width_given_quality:
            width = width / np.maximum(given, self._config.width_quality_floor)
        # a non-finite width stays non-finite (no grasp there), others are capped at 1.0
        width = np.where(np.isfinite(width), np.minimum(width, 1.0), np.nan)
        return (width * self._max_width_px).astype(np.float32)

    @staticmethod
    def _width_input(width):
        return np.maximum(width, 0.0)

    @staticmethod
    def _quality_input(quality):
        return np.clip(quality, 0.0, 1.0)

    def _inputs(self):
        out = self._output
        return (out[1], out[2], self._width_input(out[3]), self._quality_input(out[0]))

    @property
    def angle(self):
        if self._angle is None:
            cos2, sin2, _, _ = self._inputs()
            sigma = self._config.angle_sigma_px
            self._angle = self._angle_from(smooth(cos2, sigma), smooth(sin2, sigma))
        return self._angle

    @property
    def width_px(self):
        if self._width is None:
            _, _, width, raw_quality = self._inputs()
            sigma = self._config.width_sigma_px
            self._width = self._width_from(smooth(width, sigma), smooth(raw_quality, sigma))
        return self._width

    def values_at(self, rows, cols):
        if self._angle is not None and self._width is not None:
            return super().values_at(rows, cols)
        out = self._output
        a_sigma, w_sigma = self._config.angle_sigma_px, self._config.width_sigma_px
        angle = self._angle_from(smooth_at(out[1], a_sigma, rows, cols),
                                 smooth_at(out[2], a_sigma, rows, cols))
        # the width's and quality's clipping on the pixels read only
        width = self._width_from(
            smooth_at(out[3], w_sigma, rows, cols, self._width_input),
            smooth_at(out[0], w_sigma, rows, cols, self._quality_input))
        return angle, width

    def usable(self):
        # a finite output gives a finite angle and width everywhere (the width's divisor is
        # floored above 0); only a NaN or overflow in the output needs the whole maps
        return None if self._finite else super().usable()


def maps_from_output(output, max_width_px, config):
    """The :class:`NetworkMaps` of raw network output (4, H, W)."""
    return NetworkMaps(output, max_width_px, config)


def find_peaks(quality, threshold, min_distance_px, max_peaks):
    """Local maxima of a quality map, best first.

    A peak is a pixel equal to the maximum of its ``(2 d + 1)^2`` neighbourhood and at least
    ``threshold``; peaks closer than ``min_distance_px`` to a better one are dropped, so a
    plateau smaller than that distance yields one peak.

    :returns: int array (K, 2) of (row, col), K <= max_peaks.
    """
    quality = np.asarray(quality, dtype=np.float32)
    finite = bool(np.isfinite(quality.sum(dtype=np.float64)))
    if not finite:  # a NaN or inf somewhere (a broken network output): NaN is never a peak,
        # +inf is the best quality there is (kept: equal to the largest float, it would tie)
        quality = np.where(np.isnan(quality), np.float32(-np.inf), quality)
    d = max(int(min_distance_px), 1)
    # only pixels above the threshold can be peaks: the local-maximum test reads those alone
    flat = quality.ravel()
    above = np.flatnonzero(flat >= threshold)
    if not finite:  # a threshold of -inf would admit them
        above = above[flat[above] > -np.inf]
    if above.size == 0 or max_peaks <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)
    dilated = cv2.dilate(quality, kernel, borderType=cv2.BORDER_CONSTANT,
                         borderValue=-np.inf)
    above = above[flat[above] >= dilated.ravel()[above]]
    if above.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    above = above[np.argsort(-flat[above], kind='stable')]
    return _suppress(above, quality.shape, d, max_peaks)


#: Candidates read at a time by :func:`_suppress`.
_SUPPRESS_BLOCK = 64


def _suppress(candidates, shape, d, max_peaks):
    """Greedy non-maximum suppression of flat pixel indices sorted best first: keep the first,
    drop every later one within ``d`` pixels of a kept one, repeat.

    Kept peaks paint their disc into a mask and the candidates are read a block at a time
    against it, so the cost grows with the peaks kept and the candidates read, not with their
    product: a plateau (every pixel a local maximum, as a map that is 0 wherever the network
    sees nothing, with a threshold of 0) costs no more than a few peaks.

    :returns: int array (K, 2) of (row, col), K <= max_peaks.
    """
    height, width = shape
    suppressed = np.zeros(height * width, dtype=bool)
    dr, dc = np.mgrid[-d:d + 1, -d:d + 1]
    inside = dr ** 2 + dc ** 2 <= d * d
    dr, dc = dr[inside], dc[inside]
    kept = []
    start = 0
    while start < candidates.size and len(kept) < max_peaks:
        block = candidates[start:start + _SUPPRESS_BLOCK]
        free = np.flatnonzero(~suppressed[block])
        if free.size == 0:
            start += block.size
            continue
        best = block[free[0]]
        row, col = divmod(int(best), width)
        kept.append((row, col))
        rows, cols = row + dr, col + dc
        on_map = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        suppressed[rows[on_map] * width + cols[on_map]] = True
        start += int(free[0]) + 1
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def detect_grasps(maps, config, transform=None):
    """Extract grasps from maps, best first, in source pixels.

    :param maps: :class:`GraspMaps` at network resolution.
    :param config: a :class:`PostprocessConfig`.
    :param transform: a :class:`~grasp_fcn_ros.core.geometry.CropTransform` mapping network
        pixels to source pixels; None keeps network pixels.
    :returns: list of :class:`~grasp_fcn_ros.core.grasp.Grasp2D`.
    """
    # a pixel without a finite angle or width (a NaN or overflow in the network output) is no
    # grasp
    usable = maps.usable()
    score = maps.score if usable is None else np.where(usable, maps.score, np.nan)
    peaks = find_peaks(score, config.q_threshold, config.min_distance_px, config.max_grasps)
    grasps = []
    scale = 1.0 if transform is None else transform.scale
    angles, widths = maps.values_at(peaks[:, 0], peaks[:, 1])
    for (row, col), angle, width in zip(peaks, angles, widths):
        uv = np.array([col, row], dtype=np.float64)
        if transform is not None:
            uv = transform.to_source(uv)
        grasps.append(Grasp2D(u=float(uv[0]), v=float(uv[1]), angle=float(angle),
                              width_px=float(width) * scale,
                              quality=float(maps.quality[row, col])))
    return grasps
