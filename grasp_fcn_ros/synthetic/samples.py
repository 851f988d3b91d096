"""Synthetic samples: rendered in memory (for training on the fly) or written in Cornell's layout.

A sample is deterministic in ``(seed, index)``: the scene, the sensor's noise and the labels
each draw from their own stream of ``numpy.random.SeedSequence([seed, index])``.
"""

from dataclasses import dataclass, field
import json
import os

import cv2
import numpy as np

from ..training.dataset import format_rectangles
from .generator import random_scene, SceneConfig
from .labels import TopDownGrid, visible_labels
from .scene import FLOOR, OBJECT_ID, render, TABLE, WALL


@dataclass
class SyntheticSample:
    """One rendered scene, shaped like a loaded
    :class:`~grasp_fcn_ros.training.dataset.CornellSample` (``depth_m``, ``grasps``, ``load()``,
    ``load_grasps()``, ``read_depth()``, ``load_color()``), plus what made it.

    :param name: ``pcdNNNN`` (the index).
    :param depth_m: float32 (H, W) depth as the camera gives it, metres (NaN: no return).
    :param grasps: positive rectangles, :class:`~grasp_fcn_ros.core.grasp.Grasp2D` in pixels.
    :param intrinsics: the camera's :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`.
    :param scene: the :class:`~.scene.Scene`.
    :param labels: the grasps in the table frame (:class:`~.labels.GraspLabel`).
    :param clean_depth: the perfect depth (inf where nothing is).
    :param ids: what each pixel sees (see :data:`~.scene.OBJECT_ID`).
    """

    name: str
    depth_m: np.ndarray
    grasps: list
    intrinsics: object
    scene: object = None
    labels: list = field(default_factory=list)
    clean_depth: np.ndarray = None
    ids: np.ndarray = None
    seed: int = 0
    index: int = 0
    object_id: str = None
    skipped_rectangles: int = 0
    color_path: str = None

    def load(self):
        return self

    def load_grasps(self):
        return self

    def read_depth(self):
        return self.depth_m

    def load_color(self):
        """A shaded colour image of the scene (RGB uint8)."""
        return shade(self)

    def describe(self):
        """The scene as JSON-able data: camera, room, objects and labels."""
        return {'name': self.name, 'seed': self.seed, 'index': self.index,
                'camera': self.scene.camera.describe(), 'room': self.scene.room.describe(),
                'objects': [o.describe() for o in self.scene.objects],
                'grasps': [g.describe() for g in self.labels]}


def _streams(seed, index):
    """Independent generators for the scene, the sensor and the labels of one sample."""
    children = np.random.SeedSequence([int(seed), int(index)]).spawn(3)
    return [np.random.default_rng(c) for c in children]


def render_sample(seed, index, config=None):
    """Render the random scene ``index`` of ``seed``: a :class:`SyntheticSample`."""
    config = config or SceneConfig()
    scene_rng, sensor_rng, label_rng = _streams(seed, index)
    scene = random_scene(scene_rng, config)
    return sample_of_scene(scene, config, sensor_rng, label_rng, name=f'pcd{index:04d}',
                           seed=seed, index=index)


class SyntheticSamples:
    """A sequence of ``count`` scenes of a seed, rendered when indexed (nothing is stored): a
    drop-in for a list of loaded Cornell samples, for training on the fly.

    :param start: index of the first scene.
    """

    def __init__(self, seed, count, config=None, start=0):
        self.seed, self.count, self.start = int(seed), int(count), int(start)
        self.config = config or SceneConfig()

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(f'scene {i} of {self.count}')
        return render_sample(self.seed, self.start + (i % self.count), self.config)


def sample_of_scene(scene, config=None, sensor_rng=None, label_rng=None, name='scene',
                    seed=0, index=0):
    """Render a given :class:`~.scene.Scene` (e.g. from an explicit object list), add the
    sensor's errors and label it."""
    config = config or SceneConfig()
    sensor_rng = sensor_rng if sensor_rng is not None else np.random.default_rng(seed)
    label_rng = label_rng if label_rng is not None else np.random.default_rng(seed + 1)
    rendering = render(scene)
    camera = scene.camera
    depth = config.sensor.apply(rendering.depth, camera.intrinsics, sensor_rng, rendering.ids)
    grasp = config.grasp
    margin = grasp.max_opening_m / 2 + grasp.finger_width_m + max(grasp.jaw_m) / 2 + 0.01
    grid = TopDownGrid(scene, grasp.cell_m, margin)
    labels, grasps = visible_labels(grid.sample(label_rng, grasp), camera, rendering.depth)
    return SyntheticSample(name, depth, grasps, camera.intrinsics, scene, labels,
                           rendering.depth, rendering.ids, seed, index)


#: Colours (RGB) of the room in shaded images.
ROOM_COLOURS = {TABLE: (236, 232, 226), FLOOR: (92, 76, 64), WALL: (228, 226, 222)}


def shade(sample):
    """A shaded colour image of a sample (RGB uint8): its perfect depth lit from the camera
    and from above, each object in its own colour."""
    depth = sample.clean_depth
    ids = sample.ids
    k = sample.intrinsics
    h, w = depth.shape
    present = np.isfinite(depth)
    z = np.where(present, depth, np.nan).astype(np.float64)
    x = ((np.arange(w) - k.cx) / k.fx)[None, :] * z
    y = ((np.arange(h) - k.cy) / k.fy)[:, None] * z
    p = np.stack([x, y, z], -1)
    du = np.gradient(p, axis=1)
    dv = np.gradient(p, axis=0)
    n = np.cross(du, dv)
    with np.errstate(invalid='ignore', divide='ignore'):
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        view = -p / np.linalg.norm(p, axis=-1, keepdims=True)
    up = -sample.scene.camera.rotation[2]  # the table's normal in the camera frame
    light = up * 0.6 + np.array([0.3, -0.4, -0.6])
    light /= np.linalg.norm(light)
    n = np.where((n * view).sum(-1, keepdims=True) < 0, -n, n)
    lit = 0.55 + 0.45 * np.clip(np.nan_to_num((n * light).sum(-1)), 0, 1)
    palette = np.zeros((OBJECT_ID + len(sample.scene.objects), 3))
    for label, colour in ROOM_COLOURS.items():
        palette[label] = colour
    colour_rng = np.random.default_rng([int(sample.seed), int(sample.index), 7])
    for i, obj in enumerate(sample.scene.objects):
        if obj.graspable:
            hsv = np.uint8([[[colour_rng.integers(0, 180), colour_rng.integers(90, 230),
                              colour_rng.integers(120, 250)]]])
            palette[OBJECT_ID + i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
        else:
            palette[OBJECT_ID + i] = (170, 180, 190)
    image = palette[ids] * lit[..., None]
    return np.where(present[..., None], image, 0).clip(0, 255).astype(np.uint8)


def write_sample(sample, folder):
    """Write a sample in Cornell's layout: ``<name>d.tiff`` (float32 metres, NaN = no
    return), ``<name>cpos.txt``, a shaded ``<name>r.png`` and ``<name>scene.json``."""
    stem = os.path.join(folder, sample.name)
    if not cv2.imwrite(stem + 'd.tiff', sample.depth_m.astype(np.float32)):
        raise RuntimeError(f'could not write {stem}d.tiff')
    with open(stem + 'cpos.txt', 'w') as stream:
        stream.write(format_rectangles(g.polygon() for g in sample.grasps))
    cv2.imwrite(stem + 'r.png', cv2.cvtColor(shade(sample), cv2.COLOR_RGB2BGR))
    with open(stem + 'scene.json', 'w') as stream:
        json.dump(sample.describe(), stream)
    return stem


def _write_one(args):
    seed, index, config, folder = args
    sample = render_sample(seed, index, config)
    write_sample(sample, folder)
    return len(sample.grasps)


def write_dataset(folder, count, seed=0, config=None, start=0, jobs=1, progress=None):
    """Render ``count`` scenes (indices ``start`` ..) into ``folder`` in Cornell's layout.

    :param jobs: worker processes (the output does not depend on it).
    :param progress: a tqdm-like progress bar factory, or None.
    :returns: the number of grasp rectangles written.
    """
    config = config or SceneConfig()
    os.makedirs(folder, exist_ok=True)
    work = [(seed, i, config, folder) for i in range(start, start + count)]
    bar = progress(total=count, unit='scene', desc='synth') if progress else None
    total = 0
    try:
        if jobs <= 1:
            for item in work:
                total += _write_one(item)
                if bar is not None:
                    bar.update(1)
        else:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(jobs) as pool:
                for n in pool.map(_write_one, work, chunksize=4):
                    total += n
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return total
