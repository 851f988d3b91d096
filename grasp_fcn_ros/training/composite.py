"""Real-data compositing: objects cut out of training images and pasted into others.

Each Cornell image shows one object on a table. :func:`segment_scene` models the table of an
image (:func:`fit_table_surface`) and cuts the object out: the pixels standing more than
:data:`OBJECT_HEIGHT_M` above the table, in the connected components under its grasp
rectangles, slightly dilated, kept as an :class:`ObjectCutout` (the height map and mask of the
object's bounding box, with its rectangles relative to it). :func:`paste_object` puts a cutout
into another image at another position and in-plane rotation: each pasted pixel gets the depth
at which a point stands as high above the target's table as the object's pixel stood above its
own, and the nearer of that and the target's depth wins (a z-buffer). The rectangles move by
the same 2-D rigid transform. :class:`ObjectLibrary` caches the segmentation of a set of
samples and composites training examples from them.

Approximations. The pasted object is the donor image's view of it, turned in the image plane
and moved: an obliquely seen object turned in the image is not the view the camera would have
of the object turned on the table (its visible sides, its foreshortening and its size in pixels
at another distance stay the donor's), and the table hidden behind it in the donor stays
hidden. Heights come from the fitted table surface: along its normal, as the pixel's depth
below the surface times the cosine-like factor ``-n . ray`` of the fitted plane, exact for a
plane and approximate for the curved surface that Cornell's depth files show (see
:func:`fit_table_surface`).

The computations are numpy and OpenCV.
"""

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..core.depth import invalid_mask
from ..core.grasp import Grasp2D
from .dataset import GT_CENTRE_FRACTION

#: Pixels standing more than this above the table belong to objects, metres.
OBJECT_HEIGHT_M = 0.006
#: Pixels within this of the table surface (above or below) are free table, metres.
TABLE_TOLERANCE_M = 0.006
#: The object mask grows by this many pixels around its components.
DILATE_PX = 2
#: A pasted footprint keeps this many pixels away from what is there already.
CLEARANCE_PX = 4
#: Components under the rectangles smaller than this are noise, pixels.
MIN_COMPONENT_PX = 30
#: An object mask larger than this share of the image means the table fit failed.
MAX_OBJECT_SHARE = 0.25
#: A rectangle goes with the cut-out object when the object covers this share of the middle
#: third of its opening (where the training target marks it).
RECTANGLE_ON_OBJECT = 0.5
#: Placements tried per pasted object, and donors drawn per object before giving up.
PLACEMENT_TRIES = 8
DONOR_TRIES = 4
#: The pasted object's centre is drawn in the central share of the crop window: a square of
#: 70 % of the window's side stays inside the window turned by any angle.
PLACEMENT_SHARE = 0.7

#: Table fit: pixel stride of the sampled points; radius of the first (local) fit around the
#: grasps, share of the image's shorter side; the fit's rounds (plane rounds, then rounds of
#: the correction of each degree near the grasps, then over the whole image with shrinking
#: inlier distances, metres); the share of the local points the final surface must hold.
SURFACE_STRIDE_PX = 4
SURFACE_RADIUS = 0.35
PLANE_ROUNDS = 3
LOCAL_ROUNDS = ((2, 3), (3, 3))
GLOBAL_TOLERANCES_M = (0.008, 0.008, 0.008, 0.006, 0.004)
SURFACE_MIN_SHARE = 0.3
#: Trimming of the local rounds: points nearer than ``NEAR_MAD`` or farther than ``FAR_MAD``
#: robust deviations (or ``TRIM_FLOOR_M``) from the surface are dropped (objects are nearer).
NEAR_MAD = 1.0
FAR_MAD = 2.5
TRIM_FLOOR_M = 0.003
#: Exponents (i, j) of the correction's terms ``un**i * vn**j``, up to the cubic ones.
TERMS = tuple((i, j) for i in range(4) for j in range(4 - i))


@dataclass(frozen=True)
class TableSurface:
    """The table of a depth image: a plane in the camera frame, plus a smooth correction of its
    depth in the image.

    The table's depth at pixel (u, v) is ``offset / (normal . r) + correction(u, v)``, with
    ``r = (x, y, 1)`` the pixel's normalised ray and ``correction`` a cubic polynomial of the
    pixel's coordinates normalised to [-1, 1]. A pixel at depth ``z`` stands
    ``(table_depth - z) * (-normal . r)`` above the table: its height along the plane's normal,
    exact when the correction is zero. (Cornell's depth files are not planar at the Kinect's
    intrinsics: a plane leaves +-3 cm of curvature over a frame, the correction 1-2 mm.)

    :param normal: (3,) unit normal towards the camera.
    :param offset: ``normal . p`` of the plane's points, metres (negative).
    :param coefficients: (10,) the correction's coefficients of :data:`TERMS`, metres.
    :param image_width: pixels.
    :param image_height: pixels.
    :param intrinsics: the image's :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`.
    """

    normal: np.ndarray
    offset: float
    coefficients: np.ndarray
    image_width: int
    image_height: int
    intrinsics: object

    def _slope(self, u, v):
        """``-normal . r`` of pixels: how much height a metre of depth is (0 or less: the ray
        never meets the table)."""
        camera = self.intrinsics
        if camera.distorted:
            xy = camera.undistort(u, v)
            x, y = xy[..., 0], xy[..., 1]
        else:  # broadcasts a row of columns against a column of rows without full grids
            x = (np.asarray(u, np.float64) - camera.cx) / camera.fx
            y = (np.asarray(v, np.float64) - camera.cy) / camera.fy
        return -(self.normal[0] * x + self.normal[1] * y + self.normal[2])

    def _correction(self, u, v):
        un, vn = _normalised(u, v, self.image_width, self.image_height)
        un_powers, vn_powers = [1.0, un, un * un, un * un * un], [1.0, vn, vn * vn, vn * vn * vn]
        total = np.zeros(np.broadcast(un, vn).shape)
        for (i, j), c in zip(TERMS, self.coefficients):
            if c != 0.0:
                total += c * (un_powers[i] * vn_powers[j])
        return total

    def depth(self, u, v):
        """The table's depth at pixels, metres (NaN where the ray never meets it)."""
        slope = self._slope(u, v)
        with np.errstate(divide='ignore', invalid='ignore'):
            plane = np.where(slope > 1e-6, -self.offset / slope, np.nan)
        return plane + self._correction(u, v)

    def height(self, u, v, depth_m):
        """Height above the table of pixels at depths, metres (NaN where unknown)."""
        return (self.depth(u, v) - np.asarray(depth_m, np.float64)) * self._slope(u, v)

    def depth_at_height(self, u, v, height_m):
        """The depth at which pixels stand ``height_m`` above the table, metres."""
        with np.errstate(divide='ignore', invalid='ignore'):
            return self.depth(u, v) - np.asarray(height_m, np.float64) / self._slope(u, v)

    def height_map(self, depth_m, min_depth_m=0.0, max_depth_m=np.inf):
        """Heights of every pixel of a depth image, metres (NaN where the depth is invalid)."""
        h, w = depth_m.shape
        heights = self.height(np.arange(w)[None, :], np.arange(h)[:, None], depth_m)
        heights[invalid_mask(depth_m, min_depth_m, max_depth_m)] = np.nan
        return heights


def _normalised(u, v, width, height):
    """Pixel coordinates mapped to [-1, 1] over the image."""
    return ((np.asarray(u, np.float64) - (width - 1) / 2) / (width / 2),
            (np.asarray(v, np.float64) - (height - 1) / 2) / (height / 2))


def _terms(u, v, width, height):
    """The correction's terms (..., 10) at pixels."""
    un, vn = _normalised(u, v, width, height)
    return np.stack([un ** i * vn ** j for i, j in TERMS], axis=-1)


def _trimmed(residual, keep, region):
    """The points of ``region`` within the robust band of the residuals of ``keep``."""
    mad = 1.4826 * np.median(np.abs(residual[keep]))
    return region & (residual > -max(NEAR_MAD * mad, TRIM_FLOOR_M)) & (
        residual < max(FAR_MAD * mad, TRIM_FLOOR_M))


def fit_table_surface(depth_m, intrinsics, centre_uv=None, min_depth_m=0.0,
                      max_depth_m=np.inf):
    """Fit the :class:`TableSurface` of a depth image whose table shows around ``centre_uv``.

    Robust least squares on a grid of pixels: first near ``centre_uv`` (where the grasped
    object stands on the table), a plane (``1 / depth`` linear in the normalised ray), then
    the depth correction of degree 2 and 3, each round dropping the points far from the last
    fit (objects are nearer than the table: they are dropped sooner); then over the whole image
    with shrinking inlier distances, so the surface follows the table wherever it shows.

    :param centre_uv: a pixel on the table, e.g. the mean centre of the image's grasps
        (default: the image centre).
    :returns: a :class:`TableSurface`, or None when too few points fit it.
    """
    h, w = depth_m.shape
    step = SURFACE_STRIDE_PX
    v, u = np.mgrid[step // 2:h:step, step // 2:w:step]
    z = np.asarray(depth_m, np.float64)[v, u]
    valid = ~invalid_mask(z, min_depth_m, max_depth_m)
    cu, cv = ((w - 1) / 2, (h - 1) / 2) if centre_uv is None else centre_uv
    local = valid & (np.hypot(u - cu, v - cv) < SURFACE_RADIUS * min(h, w))
    if local.sum() < 3 * len(TERMS):
        return None
    xy = intrinsics.undistort(u, v)
    rays = np.stack([xy[..., 0], xy[..., 1], np.ones_like(z)], axis=-1)
    usable = valid & np.all(np.isfinite(rays), axis=-1)
    local &= usable
    keep = local
    with np.errstate(divide='ignore', invalid='ignore'):
        for _ in range(PLANE_ROUNDS):
            plane = np.linalg.lstsq(rays[keep], 1.0 / z[keep], rcond=None)[0]
            inverse = rays @ plane
            table = np.where(inverse > 0, 1.0 / inverse, np.inf)
            keep = _trimmed(z - table, keep, local)
            if keep.sum() < 3 * len(TERMS):
                return None
    norm = np.linalg.norm(plane)
    if not np.isfinite(norm) or norm == 0:
        return None
    normal, offset = -plane / norm, -1.0 / norm
    terms = _terms(u, v, w, h)
    residual = z - table
    fit = np.isfinite(residual) & usable
    coefficients = np.zeros(len(TERMS))
    rounds = [(degree, None) for degree, count in LOCAL_ROUNDS for _ in range(count)]
    rounds += [(3, tolerance) for tolerance in GLOBAL_TOLERANCES_M]
    for degree, tolerance in rounds:
        chosen = [k for k, (i, j) in enumerate(TERMS) if i + j <= degree]
        keep &= fit
        if keep.sum() < 3 * len(TERMS):
            return None
        coefficients = np.zeros(len(TERMS))
        coefficients[chosen] = np.linalg.lstsq(terms[keep][:, chosen], residual[keep],
                                               rcond=None)[0]
        left = residual - terms @ coefficients
        if tolerance is None:
            keep = _trimmed(left, keep, local & fit)
        else:
            keep = fit & (np.abs(left) < tolerance)
    if (keep & local).sum() < SURFACE_MIN_SHARE * local.sum():
        return None
    return TableSurface(normal, float(offset), coefficients, w, h, intrinsics)


def _rectangles_mask(shape, polygons, grow_px=0):
    """Pixels inside any of the polygons (N, 4, 2), grown by ``grow_px``."""
    mask = np.zeros(shape, np.uint8)
    shift = 4
    for polygon in polygons:
        points = np.round(np.asarray(polygon) * (1 << shift)).astype(np.int32)
        cv2.fillConvexPoly(mask, points, 1, lineType=cv2.LINE_8, shift=shift)
        if grow_px > 0:
            cv2.polylines(mask, [points], True, 1, thickness=2 * grow_px + 1,
                          lineType=cv2.LINE_8, shift=shift)
    return mask.astype(bool)


def _disc(radius_px):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))


@dataclass(frozen=True)
class ObjectCutout:
    """An object cut out of its image: its bounding box's heights above its table and mask,
    with its grasp rectangles relative to the box.

    :param x0: the box's first column in its image, pixels.
    :param y0: the box's first row in its image, pixels.
    :param heights_m: float32 (h, w) heights above the table, metres (0 outside the mask).
    :param mask: bool (h, w), the object's pixels.
    :param rectangles: float64 (N, 4, 2) the grasp rectangles' corners, box pixels.
    :param anchor: (2,) the mask's centroid, box pixels (the centre of the object's turns).
    """

    x0: int
    y0: int
    heights_m: np.ndarray
    mask: np.ndarray
    rectangles: np.ndarray
    anchor: np.ndarray

    def grasps(self, matrix):
        """The rectangles moved by a 2x3 transform of box pixels, as :class:`Grasp2D`."""
        corners = self.rectangles @ matrix[:, :2].T + matrix[:, 2]
        return [Grasp2D.from_polygon(c) for c in corners]

    def placement(self, centre_uv, angle_rad):
        """The 2x3 transform of box pixels that turns the object by ``angle_rad`` (counter-
        clockwise as seen in the image, as grasp angles) about its anchor and puts the anchor
        at ``centre_uv``."""
        matrix = cv2.getRotationMatrix2D((0.0, 0.0), float(np.rad2deg(angle_rad)), 1.0)
        matrix[:, 2] = np.asarray(centre_uv, np.float64) - matrix[:, :2] @ self.anchor
        return matrix


@dataclass(frozen=True)
class SceneObjects:
    """The segmentation of one image: its table, its object, and where nothing may be pasted.

    :param surface: the :class:`TableSurface`.
    :param cutout: the :class:`ObjectCutout`, or None when no object stands under the grasps.
    :param blocked_bits: ``numpy.packbits`` of the (H, W) mask of pixels that are not free
        table (objects, off the table, invalid depth), grown by :data:`CLEARANCE_PX`.
    """

    surface: TableSurface
    cutout: ObjectCutout
    blocked_bits: np.ndarray

    def blocked(self):
        """The (H, W) bool mask of pixels a pasted footprint may not cover."""
        h, w = self.surface.image_height, self.surface.image_width
        return np.unpackbits(self.blocked_bits, count=h * w).reshape(h, w).astype(bool)


def segment_scene(depth_m, grasps, intrinsics, min_depth_m=0.0, max_depth_m=np.inf):
    """Fit an image's table and cut out the object under its grasps.

    The object is the connected components (8-neighbour) of the pixels standing more than
    :data:`OBJECT_HEIGHT_M` above the table that meet the grasp rectangles (components smaller
    than :data:`MIN_COMPONENT_PX` are noise), grown by :data:`DILATE_PX`.

    :param grasps: the image's :class:`Grasp2D` list.
    :returns: a :class:`SceneObjects` (its cutout None when no object is found or the object
        mask is implausibly large), or None when no table is found.
    """
    depth_m = np.asarray(depth_m, np.float32)
    h, w = depth_m.shape
    centre = np.mean([g.center for g in grasps], axis=0) if grasps else None
    surface = fit_table_surface(depth_m, intrinsics, centre, min_depth_m, max_depth_m)
    if surface is None:
        return None
    heights = surface.height_map(depth_m, min_depth_m, max_depth_m)
    with np.errstate(invalid='ignore'):
        above = heights > OBJECT_HEIGHT_M
        table = np.abs(heights) <= TABLE_TOLERANCE_M
    # blocked: all that is not table, without isolated noisy pixels, grown by the clearance
    blocked = cv2.morphologyEx((~table).astype(np.uint8), cv2.MORPH_OPEN,
                               np.ones((3, 3), np.uint8))
    blocked = cv2.dilate(blocked, _disc(CLEARANCE_PX)).astype(bool)
    return SceneObjects(surface, _cut_out(heights, above, grasps), np.packbits(blocked))


def _cut_out(heights, above, grasps):
    if not grasps:
        return None
    h, w = heights.shape
    polygons = np.array([g.polygon() for g in grasps])
    under = _rectangles_mask((h, w), polygons)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above.astype(np.uint8),
                                                               connectivity=8)
    hits = np.bincount(labels[under], minlength=count)
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right = left + stats[:, cv2.CC_STAT_WIDTH]
    bottom = top + stats[:, cv2.CC_STAT_HEIGHT]
    # a component that reaches the image's border is not an object on the table (the room
    # beyond the table's edge, or an object merged with it)
    inside = (left > 0) & (top > 0) & (right < w) & (bottom < h)
    chosen = [k for k in range(1, count) if hits[k] > 0 and inside[k]
              and stats[k, cv2.CC_STAT_AREA] >= MIN_COMPONENT_PX]
    if not chosen:
        return None
    mask = np.isin(labels, chosen).astype(np.uint8)
    mask = cv2.dilate(mask, _disc(DILATE_PX)).astype(bool) & np.isfinite(heights)
    if mask.sum() > MAX_OBJECT_SHARE * h * w:
        return None
    # a rectangle goes with the object when the object holds the middle of its opening (the
    # part the training target marks): on flat objects, only noise stands above the threshold
    kept = []
    for grasp, polygon in zip(grasps, polygons):
        middle = _rectangles_mask((h, w), [grasp.polygon(width_px=grasp.width_px
                                                         * GT_CENTRE_FRACTION)])
        if middle.any() and (mask & middle).sum() >= RECTANGLE_ON_OBJECT * middle.sum():
            kept.append(polygon)
    if not kept:
        return None
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    box = mask[y0:y1, x0:x1]
    box_heights = np.where(box, heights[y0:y1, x0:x1], 0.0).astype(np.float32)
    anchor = np.array([cols.mean() - x0, rows.mean() - y0])
    return ObjectCutout(int(x0), int(y0), box_heights, box, np.array(kept) - [x0, y0], anchor)


@dataclass(frozen=True)
class Pasted:
    """Where a cutout went: its footprint (object and rectangles) in the image, the object's
    own pixels, and its moved grasps.

    :param x0: first column of the footprint's box, pixels.
    :param y0: first row of the footprint's box, pixels.
    :param footprint: bool (h, w) object and rectangles, in the box.
    :param object_mask: bool (h, w) the object's pixels, in the box.
    :param grasps: the moved :class:`Grasp2D` list.
    :param matrix: the 2x3 transform of the cutout's box pixels to image pixels.
    :param donor: the index of the sample the object came from (-1: not known).
    """

    x0: int
    y0: int
    footprint: np.ndarray
    object_mask: np.ndarray
    grasps: list
    matrix: np.ndarray
    donor: int = -1


def paste_object(depth_m, surface, cutout, matrix, blocked=None):
    """Paste a cutout into a depth image (in place) where it fits.

    The object's pixels go to ``matrix`` (cutout box pixels to image pixels) by bilinear
    interpolation of its heights; each gets the depth at which it stands as high above
    ``surface`` as it stood above its own table, and replaces the image's depth where it is
    nearer (or where the image has none).

    :param depth_m: float32 (H, W) the target image, metres; changed only when pasted.
    :param surface: the target image's :class:`TableSurface`.
    :param blocked: bool (H, W) pixels the footprint (object and its rectangles) may not
        cover, or None.
    :returns: a :class:`Pasted`, or None when the object would leave the image, cover a blocked
        pixel or meet no table.
    """
    h, w = depth_m.shape
    ch, cw = cutout.mask.shape
    corners = np.array([[-0.5, -0.5], [cw - 0.5, -0.5], [cw - 0.5, ch - 0.5], [-0.5, ch - 0.5]])
    placed = corners @ matrix[:, :2].T + matrix[:, 2]
    rectangles = cutout.rectangles @ matrix[:, :2].T + matrix[:, 2]
    if not np.all(np.isfinite(placed)):
        return None
    if placed.min() < -0.5 or placed[:, 0].max() > w - 0.5 or placed[:, 1].max() > h - 0.5:
        # the box leaves the image: does the object itself?
        lo = np.floor(placed.min(axis=0)).astype(int)
        hi = np.ceil(placed.max(axis=0)).astype(int) + 1
        shifted = matrix.copy()
        shifted[:, 2] -= lo
        size = tuple(int(s) for s in hi - lo)
        whole = cv2.warpAffine(cutout.mask.astype(np.float32), shifted, size,
                               flags=cv2.INTER_LINEAR) >= 0.5
        rows, cols = np.nonzero(whole)
        if rows.size == 0 or (cols + lo[0]).min() < 0 or (rows + lo[1]).min() < 0 or (
                cols + lo[0]).max() >= w or (rows + lo[1]).max() >= h:
            return None
    everything = np.concatenate([placed, rectangles.reshape(-1, 2)])
    x0, y0 = np.maximum(np.floor(everything.min(axis=0)).astype(int), 0)
    x1 = min(int(np.ceil(everything[:, 0].max())) + 1, w)
    y1 = min(int(np.ceil(everything[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    shifted = matrix.copy()
    shifted[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    object_mask = cv2.warpAffine(cutout.mask.astype(np.float32), shifted, size,
                                 flags=cv2.INTER_LINEAR) >= 0.5
    if not object_mask.any():
        return None
    footprint = object_mask | _rectangles_mask((size[1], size[0]), rectangles - (x0, y0))
    if blocked is not None and np.any(blocked[y0:y1, x0:x1] & footprint):
        return None
    heights = cv2.warpAffine(cutout.heights_m, shifted, size, flags=cv2.INTER_LINEAR)
    v, u = np.nonzero(object_mask)
    pasted = surface.depth_at_height(u + x0, v + y0, heights[v, u])
    window = depth_m[y0:y1, x0:x1]
    current = window[v, u]
    with np.errstate(invalid='ignore'):
        wins = np.isfinite(pasted) & (pasted > 0) & (
            ~np.isfinite(current) | (current <= 0) | (pasted < current))
    if not wins.any():
        return None
    window[v[wins], u[wins]] = pasted[wins]
    return Pasted(int(x0), int(y0), footprint, object_mask, cutout.grasps(matrix), matrix)


def _block(blocked, placed):
    """Add a pasted footprint, grown by :data:`CLEARANCE_PX`, to a blocked mask."""
    h, w = blocked.shape
    fh, fw = placed.footprint.shape
    pad = CLEARANCE_PX
    grown = cv2.dilate(np.pad(placed.footprint.astype(np.uint8), pad), _disc(pad)).astype(bool)
    x0, y0 = placed.x0 - pad, placed.y0 - pad
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + fw + 2 * pad, w), min(y0 + fh + 2 * pad, h)
    blocked[cy0:cy1, cx0:cx1] |= grown[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


class ObjectLibrary:
    """The objects of a set of loaded samples, segmented on first use and cached, and the
    compositing of training examples from them.

    Every sample is a donor for every other one (within one cross-validation fold: the fold's
    training images). The cache holds per sample its table (a few numbers), its cutout (the
    object's bounding box) and a packed bit mask of the image; the samples' depth is not
    copied. Segmentation is deterministic, so worker processes that segment a sample again
    find the same object.

    :param samples: loaded samples (``depth_m``, ``grasps``).
    :param intrinsics: the samples' :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`.
    """

    def __init__(self, samples, intrinsics, min_depth_m=0.0, max_depth_m=np.inf):
        self.samples = samples
        self.intrinsics = intrinsics
        self.min_depth_m = min_depth_m
        self.max_depth_m = max_depth_m
        self._scenes = {}

    def __len__(self):
        return len(self.samples)

    def scene(self, index):
        """The :class:`SceneObjects` of sample ``index`` (None: no table found)."""
        if index not in self._scenes:
            sample = self.samples[index]
            self._scenes[index] = segment_scene(sample.read_depth(), sample.grasps,
                                                self.intrinsics, self.min_depth_m,
                                                self.max_depth_m)
        return self._scenes[index]

    def prepare(self):
        """Segment every sample now; returns how many have an object to give."""
        return sum(1 for i in range(len(self))
                   if self.scene(i) is not None and self.scene(i).cutout is not None)

    def _donor(self, index, rng):
        """A sample other than ``index`` with an object, drawn from ``rng``, or None."""
        if len(self) < 2:
            return None
        for _ in range(DONOR_TRIES):
            donor = int(rng.integers(len(self) - 1))
            donor += donor >= index
            scene = self.scene(donor)
            if scene is not None and scene.cutout is not None:
                return donor
        return None

    def composite(self, index, depth_m, grasps, window, rng, max_objects):
        """Paste 1..``max_objects`` objects of other samples into sample ``index``'s depth.

        All draws come from ``rng``: the number of objects, then per object its donor and, per
        try, its centre (uniform in the central :data:`PLACEMENT_SHARE` of ``window``, the
        crop window the example shows) and turn (uniform over a full turn). A placement is
        kept when its footprint (the object and its rectangles) stays on free table, at least
        :data:`CLEARANCE_PX` from the target's objects and rectangles and from objects pasted
        before; after :data:`PLACEMENT_TRIES` the object is skipped.

        :param depth_m: the sample's depth image (not changed).
        :param grasps: the sample's grasps.
        :param window: the example's :class:`~grasp_fcn_ros.core.geometry.CropTransform`.
        :returns: ``(depth_m, grasps, pasted)``: the composited depth (the input itself when
            nothing was pasted), the sample's grasps followed by the pasted ones, and the
            :class:`Pasted` list.
        """
        count = int(rng.integers(1, max_objects + 1))
        target = self.scene(index)
        if target is None:
            return depth_m, list(grasps), []
        blocked = target.blocked()
        blocked |= _rectangles_mask(blocked.shape, [g.polygon() for g in grasps], CLEARANCE_PX)
        margin = (1.0 - PLACEMENT_SHARE) / 2 * window.size
        low = np.array([window.x0, window.y0]) + margin - 0.5
        high = np.array([window.x0, window.y0]) + window.size - margin - 0.5
        out = None
        all_grasps, pasted = list(grasps), []
        for _ in range(count):
            donor = self._donor(index, rng)
            if donor is None:
                continue
            cutout = self.scene(donor).cutout
            for _ in range(PLACEMENT_TRIES):
                centre = rng.uniform(low, high)
                angle = rng.uniform(-np.pi, np.pi)
                if out is None:
                    out = np.array(depth_m, dtype=np.float32, copy=True)
                placed = paste_object(out, target.surface, cutout,
                                      cutout.placement(centre, angle), blocked)
                if placed is None:
                    continue
                placed = replace(placed, donor=donor)
                _block(blocked, placed)
                all_grasps += placed.grasps
                pasted.append(placed)
                break
        return (out if pasted else depth_m), all_grasps, pasted
