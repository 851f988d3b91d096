"""The Cornell grasp dataset: loading, ground-truth maps, augmentation and splits."""

from dataclasses import dataclass
import glob
import os
import re

import cv2
import numpy as np
import torch

from ..core.color import read_color_image
from ..core.depth import DEPTH_FILE_TYPES, read_depth_image
from ..core.geometry import CropTransform
from ..core.grasp import Grasp2D
from ..core.preprocess import (
    DEFAULT_MAX_DEPTH_M,
    DEFAULT_MIN_DEPTH_M,
    fill_window,
    normalise_input,
)

#: Fraction of a rectangle's opening, around its centre, that is marked Q = 1.
GT_CENTRE_FRACTION = 1.0 / 3.0

#: Depth file name endings of a sample, in order of preference: ``<stem>d.tiff`` (Cornell's
#: float metres) or a 16-bit / float image of the same stem (see
#: :func:`~grasp_fcn_ros.core.depth.read_depth_image`).
DEPTH_SUFFIXES = tuple('d' + kind for kind in DEPTH_FILE_TYPES)


@dataclass
class CornellSample:
    """One Cornell image: its files and, once loaded, its depth and positive grasps.

    :param name: the sample's stem, e.g. ``pcd0100``.
    :param depth_path: ``<stem>d.tiff`` (float32 metres), or another of :data:`DEPTH_SUFFIXES`.
    :param color_path: ``<stem>r.png`` or None.
    :param positive_path: ``<stem>cpos.txt``.
    :param depth_scale: metres per unit of an integer depth file.
    """

    name: str
    depth_path: str
    color_path: str
    positive_path: str
    object_id: str = None
    depth_m: np.ndarray = None
    grasps: list = None
    skipped_rectangles: int = 0
    depth_scale: float = 0.001

    def load(self):
        """Read depth and rectangles (idempotent; the depth stays in memory). Returns self."""
        self.load_grasps()
        if self.depth_m is None:
            self.depth_m = read_depth_image(self.depth_path, self.depth_scale)
        return self

    def load_grasps(self):
        """Read the rectangles only (idempotent). Returns self."""
        if self.grasps is None:
            self.grasps, self.skipped_rectangles = load_grasps(self.positive_path)
        return self

    def read_depth(self):
        """The depth image, metres: the loaded one, else read from its file and not kept (a
        training set of thousands of frames, 1.2 MB each at 640x480, reads each frame when
        it makes an example of it instead of holding them all)."""
        if self.depth_m is not None:
            return self.depth_m
        return read_depth_image(self.depth_path, self.depth_scale)

    def load_color(self):
        """The colour image as RGB uint8, or None when there is none."""
        return read_color_image(self.color_path) if self.color_path else None


def parse_rectangles(text):
    """Parse Cornell rectangle text: 4 lines of ``x y`` per rectangle.

    Rectangles with a non-finite corner are dropped; a trailing incomplete rectangle too.

    :returns: ``(rectangles, skipped)``: a list of (4, 2) float arrays (u, v pixels) and the
        number of rectangles dropped.
    """
    points = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            points.append((float(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            points.append((np.nan, np.nan))
    rectangles, skipped = [], 0
    for i in range(0, len(points) - len(points) % 4, 4):
        rect = np.array(points[i:i + 4], dtype=np.float64)
        if np.all(np.isfinite(rect)):
            rectangles.append(rect)
        else:
            skipped += 1
    skipped += 1 if len(points) % 4 else 0
    return rectangles, skipped


def format_rectangles(rectangles):
    """Write rectangles (iterable of (4, 2)) in the Cornell text format."""
    return ''.join(f'{x:.3f} {y:.3f}\n' for rect in rectangles for x, y in rect)


def load_grasps(path):
    """Read a ``cpos.txt`` file as :class:`Grasp2D` list; returns ``(grasps, skipped)``."""
    with open(path) as stream:
        rectangles, skipped = parse_rectangles(stream.read())
    return [Grasp2D.from_polygon(r) for r in rectangles], skipped


def load_object_map(path):
    """Read an image -> object map: lines ``<stem or number> <object id>`` (space or comma).

    Lines starting with ``#`` are ignored. Keys are normalised to the sample stem's digits.
    """
    mapping = {}
    with open(path) as stream:
        for line in stream:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            parts = re.split(r'[,\s]+', line)
            if len(parts) < 2:
                continue
            digits = re.sub(r'\D', '', parts[0])
            if digits:
                mapping[int(digits)] = parts[1]
    return mapping


def find_samples(root, object_map=None, depth_scale=0.001):
    """Find Cornell samples under ``root`` (the dataset root, one of its folders, or a flat
    folder), sorted by name.

    A sample is ``<stem>cpos.txt`` with a depth file ``<stem>d.tiff`` (or ``d.png``, ``d.npy``:
    :data:`DEPTH_SUFFIXES`, the first found); samples without a depth or positive-rectangle
    file are skipped.

    :param depth_scale: metres per unit of integer depth files.

    :returns: ``(samples, skipped)``: :class:`CornellSample` list and the count skipped.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f'dataset folder not found: {root}')
    objects = load_object_map(object_map) if object_map else {}
    depth_files = {}
    for suffix in reversed(DEPTH_SUFFIXES):  # the preferred suffix is written last
        for path in glob.glob(os.path.join(root, '**', f'*{suffix}'), recursive=True):
            depth_files[path[:-len(suffix)]] = path
    samples, skipped = [], 0
    for stem, depth_path in sorted(depth_files.items()):
        positive = stem + 'cpos.txt'
        if not os.path.isfile(positive):
            skipped += 1
            continue
        color = stem + 'r.png'
        name = os.path.basename(stem)
        digits = re.sub(r'\D', '', name)
        object_id = objects.get(int(digits)) if digits and objects else None
        samples.append(CornellSample(name, depth_path, color if os.path.isfile(color) else None,
                                     positive, object_id, depth_scale=depth_scale))
    samples.sort(key=lambda s: s.name)
    return samples, skipped


def split_folds(samples, num_folds, mode='image', seed=0):
    """Split sample indices into ``num_folds`` test folds.

    ``image``: a seeded shuffle of images, dealt round-robin. ``object``: whole objects per fold
    (from each sample's ``object_id``); without object ids, contiguous blocks of images (in
    Cornell, images of one object are consecutive).

    :returns: list of index arrays, one per fold.
    """
    n = len(samples)
    if num_folds < 2 or num_folds > n:
        raise ValueError(f'need 2 <= folds <= {n}, got {num_folds}')
    if mode == 'image':
        order = np.random.default_rng(seed).permutation(n)
        return [np.sort(order[k::num_folds]) for k in range(num_folds)]
    if mode != 'object':
        raise ValueError(f"split mode must be 'image' or 'object', got '{mode}'")
    if all(s.object_id is not None for s in samples):
        objects = sorted({s.object_id for s in samples})
        order = np.random.default_rng(seed).permutation(len(objects))
        fold_of = {objects[j]: k % num_folds for k, j in enumerate(order)}
        return [np.array([i for i, s in enumerate(samples) if fold_of[s.object_id] == k])
                for k in range(num_folds)]
    return [np.asarray(block) for block in np.array_split(np.arange(n), num_folds)]


def ground_truth_maps(grasps, size, max_width_px):
    """Draw the training targets: Q, cos 2phi, sin 2phi and width / max_width_px maps.

    The centre third of each rectangle (along its opening) gets Q = 1 and carries that grasp's
    angle and width; everything else is 0. Later rectangles overwrite earlier ones.

    :param grasps: :class:`Grasp2D` list in network pixels.
    :param size: map side in pixels.
    :param max_width_px: width, network pixels, that maps to 1.0 (larger is clipped).
    :returns: float32 (4, size, size).
    """
    maps = np.zeros((4, size, size), dtype=np.float32)
    shift = 4
    for grasp in grasps:
        mask = np.zeros((size, size), np.uint8)
        poly = grasp.polygon(width_px=grasp.width_px * GT_CENTRE_FRACTION)
        cv2.fillPoly(mask, [np.round(poly * (1 << shift)).astype(np.int32)], 1,
                     lineType=cv2.LINE_8, shift=shift)
        inside = mask.astype(bool)
        maps[0][inside] = 1.0
        maps[1][inside] = np.cos(2 * grasp.angle)
        maps[2][inside] = np.sin(2 * grasp.angle)
        maps[3][inside] = min(grasp.width_px / max_width_px, 1.0)
    return maps


def transform_grasps(grasps, matrix):
    """Apply a 2x3 affine pixel transform to grasps (their rectangles' corners)."""
    out = []
    for g in grasps:
        corners = g.polygon() @ matrix[:, :2].T + matrix[:, 2]
        out.append(Grasp2D.from_polygon(corners, g.quality))
    return out


@dataclass(frozen=True)
class AugmentConfig:
    """Random crop / zoom / rotation applied to training images, and optionally a left-right
    mirror and real-data compositing.

    :param rotation_deg: rotations drawn uniformly in +-rotation_deg degrees.
    :param zoom_min: smallest zoom (crop side factor); zoom drawn in [zoom_min, 1].
    :param shift_px: crop centre drawn within +-shift_px of the grasps' centre, source pixels.
    :param flip: mirror half of the examples left-right (input and rectangles: angles mirror).
        Never up-down: the camera sees the table obliquely, and an up-down mirror would put
        the table's far edge at the bottom.
    :param composite: probability that an example gets objects of other training images
        pasted on its table (:mod:`~grasp_fcn_ros.training.composite`); 0 = never.
    :param composite_max_objects: a composited example gets 1 to this many objects.
    """

    rotation_deg: float = 20.0
    zoom_min: float = 0.8
    shift_px: float = 40.0
    flip: bool = False
    composite: float = 0.0
    composite_max_objects: int = 2

    def __post_init__(self):
        if not 0.0 <= self.composite <= 1.0:
            raise ValueError(f'the composite probability must be in [0, 1], got '
                             f'{self.composite}')
        if self.composite_max_objects < 1:
            raise ValueError('composite_max_objects must be at least 1, got '
                             f'{self.composite_max_objects}')


def _augmented_transforms(sample, shape, input_size, crop_size_px, rng, augment):
    """Draw one augmentation: the source window, a larger window around it that holds the
    rotated square, and the in-plane rotation.

    :param shape: ``(height, width)`` of the sample's depth image, pixels.
    :returns: ``(window, outer, rotation)``: two :class:`CropTransform` and a 3x3 matrix that
        turns network pixels of ``window`` about the network image's centre.
    """
    h, w = shape
    base = CropTransform.centred(w, h, crop_size_px, input_size)
    centres = np.array([g.center for g in sample.grasps]) if sample.grasps else None
    target = centres.mean(axis=0) if centres is not None else np.array([(w - 1) / 2,
                                                                         (h - 1) / 2])
    target = target + rng.uniform(-augment.shift_px, augment.shift_px, 2)
    zoom = rng.uniform(augment.zoom_min, 1.0)
    angle_deg = rng.uniform(-augment.rotation_deg, augment.rotation_deg)
    side = min(max(int(round(base.size * zoom)), 1), w, h)
    window = _window_at(target, side, w, h, input_size)
    # a window that holds the turned square, so its corners show real depth where the image has
    # it; its network size keeps the window's scale
    turn = np.deg2rad(angle_deg)
    outer_side = min(int(np.ceil(side * (abs(np.cos(turn)) + abs(np.sin(turn))))), w, h)
    outer_out = max(int(round(outer_side / window.scale)), 1)
    outer = _window_at(target, outer_side, w, h, outer_out)
    centre = (input_size - 1) / 2
    rotation = np.vstack([cv2.getRotationMatrix2D((centre, centre), angle_deg, 1.0),
                          [0, 0, 1]])
    return window, outer, rotation


def _window_at(centre_uv, side, width, height, out_size):
    """The square window of ``side`` pixels nearest to ``centre_uv`` inside the image."""
    x0 = int(round(centre_uv[0] - (side - 1) / 2))
    y0 = int(round(centre_uv[1] - (side - 1) / 2))
    x0 = min(max(x0, 0), width - side)
    y0 = min(max(y0, 0), height - side)
    return CropTransform(x0, y0, side, out_size)


def _homogeneous(affine):
    return np.vstack([affine, [0, 0, 1]])


def augmented_input(sample, input_size, crop_size_px, rng=None, augment=None,
                    min_depth_m=DEFAULT_MIN_DEPTH_M, max_depth_m=DEFAULT_MAX_DEPTH_M,
                    objects=None, index=None, details=None):
    """The filled network window of a sample and its grasps in network pixels (the input of
    :func:`make_example` before normalisation).

    The augmentation draws from ``rng`` in a fixed order: the crop's shift, zoom and rotation,
    then (with ``augment.flip``) the mirror, then (with ``augment.composite`` and ``objects``)
    the compositing. Each draw happens only when its option is on: without the mirror and the
    compositing, an example is exactly what the crop, zoom and rotation alone make.

    :param objects: an :class:`~grasp_fcn_ros.training.composite.ObjectLibrary` whose sample
        ``index`` this is, for compositing; None = no compositing.
    :param details: a dict to fill with how the example was made (for figures): ``depth_m``
        (the source depth after compositing), ``window`` (the crop window), ``pasted`` (the
        :class:`~grasp_fcn_ros.training.composite.Pasted` list), ``mirrored`` and
        ``to_network`` (2x3, source to network pixels).
    :returns: ``(filled, grasps)``: float32 (S, S) depth in metres and :class:`Grasp2D` list.
    :raises DepthError: when the window holds no usable depth.
    """
    depth = sample.read_depth()
    h, w = depth.shape
    details = {} if details is None else details
    if augment is None or rng is None:
        window = CropTransform.centred(w, h, crop_size_px, input_size)
        filled = fill_window(depth, window, min_depth_m, max_depth_m)
        details.update(depth_m=depth, window=window, pasted=[], mirrored=False,
                       to_network=window.affine_to_network())
        return filled, transform_grasps(sample.grasps, window.affine_to_network())
    window, outer, rotation = _augmented_transforms(sample, depth.shape, input_size,
                                                    crop_size_px, rng, augment)
    mirror = augment.flip and rng.random() < 0.5
    grasps, pasted = sample.grasps, []
    if augment.composite > 0 and objects is not None and index is not None:
        if rng.random() < augment.composite:
            depth, grasps, pasted = objects.composite(index, depth, grasps, window, rng,
                                                      augment.composite_max_objects)
    to_window = rotation @ _homogeneous(window.affine_to_network())
    outer_to_window = to_window @ np.linalg.inv(_homogeneous(outer.affine_to_network()))
    filled = cv2.warpAffine(fill_window(depth, outer, min_depth_m, max_depth_m),
                            outer_to_window[:2], (input_size, input_size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if mirror:
        # the mirror of the turned window: exact on the pixels, folded into the rectangles'
        # transform (u -> S - 1 - u)
        filled = np.ascontiguousarray(filled[:, ::-1])
        to_window = np.array([[-1.0, 0.0, input_size - 1.0], [0.0, 1.0, 0.0],
                              [0.0, 0.0, 1.0]]) @ to_window
    details.update(depth_m=depth, window=window, pasted=pasted, mirrored=bool(mirror),
                   to_network=to_window[:2])
    return filled, transform_grasps(grasps, to_window[:2])


def make_example(sample, input_size, crop_size_px, max_width_px, rng=None, augment=None,
                 min_depth_m=DEFAULT_MIN_DEPTH_M, max_depth_m=DEFAULT_MAX_DEPTH_M,
                 objects=None, index=None):
    """Build one (input, target) pair from a loaded sample.

    The input goes through :func:`~grasp_fcn_ros.core.preprocess.fill_window` and
    :func:`~grasp_fcn_ros.core.preprocess.normalise_input`, the detector's own preprocessing.
    Without augmentation the window is the detector's centred crop, so the input is exactly
    what the node computes for the same frame and settings. With augmentation the window is
    shifted (around the grasps) and zoomed, and the filled window is turned in the plane; with
    ``augment.flip`` half of the examples are mirrored left-right; with ``augment.composite``
    and ``objects``, objects of other samples are first pasted into the depth image, with
    their rectangles (see :func:`augmented_input`).

    :param min_depth_m: nearest usable depth, metres (the detector's ``min_depth_m``).
    :param max_depth_m: farthest usable depth, metres (the detector's ``max_depth_m``).
    :param objects: an :class:`~grasp_fcn_ros.training.composite.ObjectLibrary` whose sample
        ``index`` this is, for compositing; None = no compositing.
    :returns: ``(x, y)``: float32 (1, S, S) normalised depth and (4, S, S) targets.
    :raises DepthError: when the window holds no usable depth.
    """
    filled, grasps = augmented_input(sample, input_size, crop_size_px, rng, augment,
                                     min_depth_m, max_depth_m, objects, index)
    x = normalise_input(filled)[None]
    y = ground_truth_maps(grasps, input_size, max_width_px)
    return x, y


class JoinedSamples:
    """Several sample sequences as one (e.g. loaded Cornell samples, then synthetic scenes
    rendered when indexed), without materialising them."""

    def __init__(self, *parts):
        self.parts = parts
        self._ends = np.cumsum([len(part) for part in parts])

    def __len__(self):
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index):
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f'sample {index} of {len(self)}')
        part = int(np.searchsorted(self._ends, index, side='right'))
        start = int(self._ends[part - 1]) if part else 0
        return self.parts[part][index - start]


class GraspDataset(torch.utils.data.Dataset):
    """Training examples of loaded samples: :func:`make_example` pairs as tensors.

    Items are indexed by ``(epoch, index)`` (a plain ``index`` means epoch 0). With
    augmentation, each example draws from its own random stream, seeded by ``(seed, epoch,
    index)``, so an example is the same whichever process or data loader worker builds it, and
    in whichever order: results depend neither on ``--workers`` nor on the number of
    distributed processes. The samples' decoded depth is held in memory (load them before).

    :param samples: loaded :class:`CornellSample` list.
    :param augment: :class:`AugmentConfig`, or None for the detector's centred crop.
    :param seed: the run's seed.
    :param objects: for ``augment.composite``: an
        :class:`~grasp_fcn_ros.training.composite.ObjectLibrary` of the first ``len(objects)``
        samples (the real training images; samples after them, e.g. synthetic scenes, are
        neither composited nor donors); None = no compositing.
    """

    def __init__(self, samples, input_size, crop_size_px, max_width_px, augment=None, seed=0,
                 min_depth_m=DEFAULT_MIN_DEPTH_M, max_depth_m=DEFAULT_MAX_DEPTH_M,
                 objects=None):
        # a sequence that renders on demand (synthetic scenes) stays one
        self.samples = samples if hasattr(samples, '__getitem__') else list(samples)
        self.input_size = input_size
        self.crop_size_px = crop_size_px
        self.max_width_px = max_width_px
        self.augment = augment
        self.seed = seed
        self.min_depth_m = min_depth_m
        self.max_depth_m = max_depth_m
        self.objects = objects

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = None
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        index = int(index)
        objects = self.objects if self.objects is not None and index < len(self.objects) \
            else None
        x, y = make_example(self.samples[index], self.input_size, self.crop_size_px,
                            self.max_width_px, rng, self.augment, self.min_depth_m,
                            self.max_depth_m, objects, index)
        return torch.from_numpy(x), torch.from_numpy(y)


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(epoch, index)`` keys of a :class:`GraspDataset` for one process of
    ``world_size``.

    Every epoch the indices are shuffled with a stream seeded by ``(seed, epoch)`` (the same in
    every process), padded by repeating the first ones to a multiple of ``world_size`` (as
    ``torch.utils.data.DistributedSampler`` does), and dealt round-robin: process ``rank``
    takes every ``world_size``-th index from ``rank`` on. Batch ``k`` of all processes together
    is then exactly batch ``k`` of one process with ``batch_size * world_size`` (up to the
    padding of the last one), and every process has the same number of batches of the same
    sizes.

    :param count: number of items.
    :param batch_size: items per batch of this process.
    :param shuffle: False keeps the items in order (recalibration).
    """

    def __init__(self, count, batch_size, seed=0, rank=0, world_size=1, shuffle=True):
        if batch_size < 1:
            raise ValueError(f'batch size must be at least 1, got {batch_size}')
        self.count = count
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch):
        """Take the order of ``epoch`` (call before each pass)."""
        self.epoch = epoch

    def indices(self):
        """This process's indices of the current epoch, in order."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.count)
        else:
            order = np.arange(self.count)
        padding = -self.count % self.world_size
        order = np.concatenate([order, np.resize(order, padding)]) if padding else order
        return [int(i) for i in order[self.rank::self.world_size]]

    def __iter__(self):
        mine = self.indices()
        for start in range(0, len(mine), self.batch_size):
            yield [(self.epoch, i) for i in mine[start:start + self.batch_size]]

    def __len__(self):
        per_rank = -(-self.count // self.world_size)
        return -(-per_rank // self.batch_size)
