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
    :param width_given_quality: read the width as ``width / Q`` (see :func:`maps_from_output`).
    :param width_quality_floor: smallest Q divided by when ``width_given_quality`` is set.
    """

    q_threshold: float = 0.2
    max_grasps: int = 5
    min_distance_px: int = 10
    q_sigma_px: float = 2.0
    angle_sigma_px: float = 2.0
    width_sigma_px: float = 1.0
    width_given_quality: bool = True
    width_quality_floor: float = 0.05


@dataclass
class GraspMaps:
    """Per-pixel grasp maps at network resolution.

    :param quality: Q in [0, 1].
    :param angle: grasp angle, radians.
    :param width_px: gripper opening, network pixels.
    """

    quality: np.ndarray
    angle: np.ndarray
    width_px: np.ndarray


def smooth(image, sigma_px):
    """Gaussian blur (reflecting borders) with a kernel of about 4 sigma each side."""
    if sigma_px <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma_px),
                            borderType=cv2.BORDER_REFLECT)


def maps_from_output(output, max_width_px, config):
    """Turn raw network output (4, H, W: Q, cos 2phi, sin 2phi, width/max) into smoothed maps.

    The network is trained with a mean squared error against a width map that is zero
    wherever there is no grasp, so where it is unsure whether a pixel is a grasp (Q = p) its
    best width estimate is ``p * width``: uncertain grasps come out too narrow. With
    ``config.width_given_quality`` the width is read as ``width / Q`` (both smoothed alike, Q
    floored at ``config.width_quality_floor``, the result at most 1.0), the width a grasp there
    would have; a network that is sure (Q = 1 on its grasps) is unaffected.

    :param output: float array (4, H, W).
    :param max_width_px: network pixels that a width value of 1.0 stands for.
    :param config: a :class:`PostprocessConfig`.
    """
    output = np.asarray(output, dtype=np.float32)
    raw_quality = np.clip(output[0], 0.0, 1.0)
    quality = smooth(raw_quality, config.q_sigma_px)
    cos2 = smooth(output[1], config.angle_sigma_px)
    sin2 = smooth(output[2], config.angle_sigma_px)
    width = smooth(np.clip(output[3], 0.0, None), config.width_sigma_px)
    if config.width_given_quality:
        given = smooth(raw_quality, config.width_sigma_px)
        width = width / np.maximum(given, config.width_quality_floor)
        # a non-finite width stays non-finite (no grasp there), others are capped at 1.0
        width = np.where(np.isfinite(width), np.minimum(width, 1.0), np.nan)
    width = width * max_width_px
    angle = 0.5 * np.arctan2(sin2, cos2)
    return GraspMaps(quality, angle.astype(np.float32), width.astype(np.float32))


def find_peaks(quality, threshold, min_distance_px, max_peaks):
    """Local maxima of a quality map, best first.

    A peak is a pixel equal to the maximum of its ``(2 d + 1)^2`` neighbourhood and at least
    ``threshold``; peaks closer than ``min_distance_px`` to a better one are dropped, so a
    plateau smaller than that distance yields one peak.

    :returns: int array (K, 2) of (row, col), K <= max_peaks.
    """
    quality = np.nan_to_num(np.asarray(quality, dtype=np.float32), nan=-np.inf)
    d = max(int(min_distance_px), 1)
    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)
    dilated = cv2.dilate(quality, kernel, borderType=cv2.BORDER_CONSTANT,
                         borderValue=-np.inf)
    candidates = np.argwhere((quality >= dilated) & (quality >= threshold)
                             & np.isfinite(quality))
    if candidates.size == 0 or max_peaks <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(-quality[candidates[:, 0], candidates[:, 1]], kind='stable')
    candidates = candidates[order]
    kept = []
    while candidates.shape[0] and len(kept) < max_peaks:
        best = candidates[0]
        kept.append(best)
        far = ((candidates - best) ** 2).sum(axis=1) > d * d
        candidates = candidates[far]
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
    usable = np.isfinite(maps.angle) & np.isfinite(maps.width_px)
    quality = np.where(usable, maps.quality, np.nan)
    peaks = find_peaks(quality, config.q_threshold, config.min_distance_px, config.max_grasps)
    grasps = []
    scale = 1.0 if transform is None else transform.scale
    for row, col in peaks:
        uv = np.array([col, row], dtype=np.float64)
        if transform is not None:
            uv = transform.to_source(uv)
        grasps.append(Grasp2D(u=float(uv[0]), v=float(uv[1]),
                              angle=float(maps.angle[row, col]),
                              width_px=float(maps.width_px[row, col]) * scale,
                              quality=float(maps.quality[row, col])))
    return grasps
