"""What a structured-light or active-stereo depth camera makes of a perfect depth image.

The camera triangulates against a projector (Kinect) or a second imager (RealSense) a
``baseline_m`` to its side, so its errors live in *disparity*, ``f * baseline / z`` pixels:

- noise of ``disparity_noise_px`` (spatially correlated over ``noise_correlation_px``, the
  matching window) and quantisation to ``disparity_step_px``: both grow as z^2 in depth; the
  steps smoothed over ``smoothing_px`` within surfaces, as Cornell's files are;
- a smooth low-order distortion of the depth over the image (up to ``warp`` of the depth),
  as Cornell's table shows (a plane fits its table only to +-3 cm, a quadratic to 2 mm);
- no return where the projector's light cannot reach (the *shadow* beside each object, on the
  side away from the projector), at depth discontinuities (``edge_*``), on surfaces seen at
  grazing angles (``grazing_deg``), in random missing-return patches (``blobs``: dark or
  shiny spots), on whole dark objects (``dark_object_probability``), at random pixels
  (``dropout``), and outside ``[min_range_m, max_range_m]``.

Cornell's depth files hold no invalid pixel (their holes were filled when they were made;
measured: 0 of 24.6 M pixels) and beyond the range they hold a constant ~2.03 m: with
``fill_probability`` a frame's holes are filled the same way (inpainted), otherwise they stay
NaN, as a raw camera frame has them (the detector inpaints them).

Defaults are those of a Kinect-class camera, set so that the statistics of the synthetic frames
match Cornell's (``docs/synthetic_sensor_stats.png``).
"""

from dataclasses import dataclass

import cv2
import numpy as np

from ..core.depth import inpaint
from .scene import OBJECT_ID


@dataclass(frozen=True)
class SensorModel:
    """Depth camera errors; see the module's description.

    :param enabled: apply the model (False: the perfect depth, invalid only where nothing is).
    :param baseline_m: projector (or second imager) to camera distance, metres.
    :param projector_side: +1 when the projector is at the camera's +x (the shadows fall on
        the left of objects in the image, as Kinect's and RealSense's do), -1 at -x.
    :param disparity_noise_px: standard deviation of a pixel's disparity, pixels.
    :param noise_correlation_px: standard deviation of the Gaussian that correlates the noise
        over neighbouring pixels, pixels (0: independent pixels).
    :param disparity_step_px: disparity quantisation step, pixels (0: none).
    :param smoothing_px: standard deviation of the smoothing of the quantised disparity
        (within surfaces, not across edges), pixels (0: none).
    :param warp: largest relative depth distortion at the image corners.
    :param edge_jump: relative depth difference between neighbours that makes an edge.
    :param edge_drop: probability that a pixel within ``edge_width_px`` of an edge is lost.
    :param edge_width_px: half width of the band around edges, pixels.
    :param shadow: lose the pixels the projector does not light.
    :param grazing_deg: surfaces seen more obliquely than this return nothing.
    :param dropout: probability that any pixel is lost.
    :param blobs: mean number of missing-return patches per frame.
    :param blob_radius_px: range of the patches' radii, pixels (for a 640-pixel-wide image).
    :param dark_object_probability: chance that an object returns little (a dark or shiny
        one): most of its pixels are lost.
    :param min_range_m: nearest depth the camera measures, metres.
    :param max_range_m: farthest depth the camera measures, metres.
    :param fill_probability: chance that a frame's invalid pixels are filled (inpainted), as
        in Cornell's files.
    """

    enabled: bool = True
    baseline_m: float = 0.075
    projector_side: int = 1
    disparity_noise_px: float = 0.07
    noise_correlation_px: float = 1.0
    disparity_step_px: float = 0.125
    smoothing_px: float = 0.7
    warp: float = 0.03
    edge_jump: float = 0.03
    edge_drop: float = 0.6
    edge_width_px: int = 1
    shadow: bool = True
    grazing_deg: float = 82.0
    dropout: float = 0.002
    blobs: float = 1.5
    blob_radius_px: tuple = (3.0, 15.0)
    dark_object_probability: float = 0.05
    min_range_m: float = 0.25
    max_range_m: float = 3.5
    fill_probability: float = 0.5

    def sigma_m(self, z_m, fx):
        """Standard deviation of the depth noise at depth z for focal length fx, metres."""
        return np.asarray(z_m) ** 2 * self.disparity_noise_px / (fx * self.baseline_m)

    def step_m(self, z_m, fx):
        """Depth quantisation step at depth z for focal length fx, metres."""
        return np.asarray(z_m) ** 2 * self.disparity_step_px / (fx * self.baseline_m)

    def apply(self, depth, intrinsics, rng, ids=None, fill=None):
        """The camera's frame of a perfect depth image.

        :param depth: (H, W) float depth along the optical axis, metres (inf: nothing).
        :param intrinsics: the image's camera model.
        :param rng: a numpy Generator (the only source of randomness).
        :param ids: the id image of the rendering (for dark objects), or None.
        :param fill: fill the holes (True / False), or None to draw it.
        :returns: float32 (H, W) metres; lost pixels NaN unless filled.
        """
        depth = np.asarray(depth, np.float32)
        h, w = depth.shape
        present = np.isfinite(depth) & (depth > 0)
        if not self.enabled:
            return np.where(present, depth, np.nan).astype(np.float32)
        if fill is None:
            fill = rng.random() < self.fill_probability
        z = np.where(present, depth, np.float32(1.0))
        fb = np.float32(intrinsics.fx * self.baseline_m)
        # a smooth distortion over the image, then the disparity's noise and quantisation
        if self.warp > 0:
            x = ((np.arange(w) - intrinsics.cx) / intrinsics.fx)[None, :]
            y = ((np.arange(h) - intrinsics.cy) / intrinsics.fy)[:, None]
            corner = max(x.max() ** 2, x.min() ** 2) + max(y.max() ** 2, y.min() ** 2)
            a, b, c = rng.uniform(-1, 1, 3) * self.warp / corner
            z = z * (1 + a * x * x + b * y * y + c * x * y).astype(np.float32)
        disparity = fb / z
        if self.disparity_noise_px > 0:
            noise = rng.standard_normal((h, w), dtype=np.float32)
            s = self.noise_correlation_px
            if s > 0:
                # correlated, and scaled back to unit variance (the kernel's squared weights)
                size = 2 * int(np.ceil(4 * s)) + 1
                kernel = cv2.getGaussianKernel(size, s).ravel()
                noise = cv2.GaussianBlur(noise, (size, size), s) / np.float32(
                    (kernel ** 2).sum())
            disparity = disparity + np.float32(self.disparity_noise_px) * noise
        if self.disparity_step_px > 0:
            step = np.float32(self.disparity_step_px)
            disparity = np.round(disparity / step) * step
        if self.smoothing_px > 0:
            # smoothed as Cornell's files are (ramps between the steps), not across edges
            smooth = cv2.GaussianBlur(disparity, (0, 0), self.smoothing_px)
            limit = 2 * max(self.disparity_step_px, self.disparity_noise_px)
            disparity = np.where(np.abs(smooth - disparity) < limit, smooth, disparity)
        with np.errstate(divide='ignore'):
            measured = fb / disparity
        lost = ~present | (disparity <= 0)
        lost |= self.lost_pixels(depth, present, intrinsics, rng, ids)
        lost |= (measured < self.min_range_m) | (measured > self.max_range_m)
        out = np.where(lost, np.nan, measured).astype(np.float32)
        if fill and lost.any() and not lost.all():
            out = inpaint(np.nan_to_num(out, nan=0.0), lost)
        return out

    def lost_pixels(self, depth, present, intrinsics, rng, ids=None):
        """The pixels without a return, from the perfect depth (bool (H, W))."""
        h, w = depth.shape
        z = np.where(present, depth, np.float32(np.inf))
        lost = np.zeros((h, w), bool)
        if self.shadow and self.baseline_m > 0:
            lost |= projector_shadow(z, intrinsics.fx * self.baseline_m, self.projector_side)
        if self.edge_drop > 0:
            zf = np.where(present, depth, np.float32(1e3))
            jump = np.zeros((h, w), bool)
            dx = np.abs(np.diff(zf, axis=1)) > self.edge_jump * np.minimum(zf[:, 1:], zf[:, :-1])
            dy = np.abs(np.diff(zf, axis=0)) > self.edge_jump * np.minimum(zf[1:], zf[:-1])
            jump[:, 1:] |= dx
            jump[:, :-1] |= dx
            jump[1:] |= dy
            jump[:-1] |= dy
            if self.edge_width_px > 1:
                k = 2 * self.edge_width_px - 1
                jump = cv2.dilate(jump.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
            lost |= jump & (rng.random((h, w), dtype=np.float32) < self.edge_drop)
        if self.grazing_deg < 90:
            lost |= grazing(depth, present, intrinsics, self.grazing_deg)
        if self.dropout > 0:
            lost |= rng.random((h, w), dtype=np.float32) < self.dropout
        scale = w / 640.0
        for _ in range(rng.poisson(self.blobs)):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = tuple(int(round(scale * rng.uniform(*self.blob_radius_px))) for _ in range(2))
            mask = np.zeros((h, w), np.uint8)
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            lost |= mask.astype(bool)
        if ids is not None and self.dark_object_probability > 0:
            for label in np.unique(ids[ids >= OBJECT_ID]):
                if rng.random() < self.dark_object_probability:
                    blotch = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0),
                                              3 * scale)
                    lost |= (ids == label) & (blotch > np.quantile(blotch, 0.2))
        return lost


def projector_shadow(depth, fb, side=1, tolerance_px=0.5):
    """Pixels that the projector, ``fb / f`` metres to the camera's side, cannot light.

    In the projector's (rectified) image a point of column u and depth z lands at
    ``u - side * fb / z``; a pixel is in shadow when a pixel beside it, nearer the projector's
    side, lands at or beyond it there (it lies in front along the projector's ray).

    :param depth: (H, W) depth, metres (inf where nothing is: never a shadow caster).
    :param fb: focal length (pixels) times baseline (metres).
    :param side: +1: the projector at the camera's +x; -1: at -x.
    """
    h, w = depth.shape
    with np.errstate(divide='ignore'):
        shift = np.float32(fb) / depth
    u = np.arange(w, dtype=np.float32)[None, :]
    if side > 0:
        up = u - shift
        # smallest projector column of the pixels to the right
        after = np.minimum.accumulate(up[:, ::-1], axis=1)[:, ::-1]
        beyond = np.concatenate([after[:, 1:], np.full((h, 1), np.inf)], axis=1)
        return beyond < up - tolerance_px
    up = u + shift
    before = np.maximum.accumulate(up, axis=1)
    beyond = np.concatenate([np.full((h, 1), -np.inf), before[:, :-1]], axis=1)
    return beyond > up + tolerance_px


def grazing(depth, present, intrinsics, limit_deg):
    """Pixels whose surface is seen more obliquely than ``limit_deg`` from its normal.

    For a depth map z(u, v) the normal of the surface through the pixel's ray
    r = (x', y', 1) is (-fx z_u, -fy z_v, fx z_u x' + fy z_v y' + z), whose dot product with
    r is z: cos = z / (|n| |r|).
    """
    h, w = depth.shape
    z = np.where(present, depth, np.nan).astype(np.float32)
    zu = np.zeros_like(z)
    zv = np.zeros_like(z)
    zu[:, 1:-1] = 0.5 * (z[:, 2:] - z[:, :-2])
    zv[1:-1] = 0.5 * (z[2:] - z[:-2])
    xs = ((np.arange(w) - intrinsics.cx) / intrinsics.fx).astype(np.float32)[None, :]
    ys = ((np.arange(h) - intrinsics.cy) / intrinsics.fy).astype(np.float32)[:, None]
    a = np.float32(intrinsics.fx) * zu
    b = np.float32(intrinsics.fy) * zv
    c = a * xs + b * ys + z
    with np.errstate(invalid='ignore'):
        cos2 = z * z / ((a * a + b * b + c * c) * (1 + xs * xs + ys * ys))
        # across a depth discontinuity the difference is no surface: the edge model's
        smooth = np.maximum(np.abs(zu), np.abs(zv)) < 0.05 * z
    return smooth & (np.nan_to_num(cos2, nan=1.0) < np.cos(np.deg2rad(limit_deg)) ** 2)
