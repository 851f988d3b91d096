"""Random scenes: a camera, a table and its surroundings, and 1-6 objects on the table.

Two views, drawn to cover both the Cornell frames and a robot's bin camera:

- ``table``: an oblique view of a table, the way Cornell's Kinect saw it (measured on its 80
  frames with fx = 585 px: the table 44.6-50.5 deg from fronto-parallel, 1.08-1.15 m away along
  the optical axis, its slope turned by -6 to +21 deg about it, the table starting at rows
  88-119); drawn from 35-60 deg, 0.8-1.5 m and +-22 deg, with the table's far edge in the upper
  8-40 % of the image (85 % of the scenes), a back wall and the floor beyond it;
- ``bin``: nearly top-down (0-20 deg) at 0.3-0.7 m, over a bin (walls 5-15 cm high) or a bare
  table.

Cameras: ``kinect`` (640x480, fx 570-600 px) or ``realsense`` (640x480 with fx 600-630 px, or
1280x720 with fx 630-940 px).
"""

from dataclasses import dataclass, field

import numpy as np

from ..core.geometry import CameraIntrinsics
from .labels import GraspConfig
from .scene import Camera, PlacedObject, Room, rotation_z, Scene
from .sensor import SensorModel
from .shapes import Bowl, Box, Cup, Cylinder, Ellipsoid, extrusion, strap, tube

CAMERAS = ('kinect', 'realsense', 'mixed')
VIEWS = ('table', 'bin', 'mixed')

#: Object kinds and how often each is drawn.
OBJECT_KINDS = {
    'box': 0.15, 'cylinder': 0.07, 'cylinder_lying': 0.07, 'ellipsoid': 0.10, 'cup': 0.06,
    'bowl': 0.04, 'ring': 0.03, 'extrusion': 0.15, 'rod': 0.11, 'strap': 0.07, 'cable': 0.08,
    'loop': 0.07,
}


@dataclass(frozen=True)
class SceneConfig:
    """What random scenes look like.

    :param camera: ``kinect``, ``realsense`` or ``mixed`` (each half the time).
    :param view: ``table`` (oblique, Cornell-like), ``bin`` (near top-down) or ``mixed``.
    :param objects: least and most objects per scene.
    :param kinds: object kinds drawn (keys of :data:`OBJECT_KINDS`).
    :param size_m: smallest and largest footprint extent of an object, metres.
    :param stack_probability: chance that an object is put on top of another one.
    :param table_tilt_deg: range of the table view's angle from the table's normal.
    :param table_distance_m: range of the table view's distance along the optical axis.
    :param bin_tilt_deg: as ``table_tilt_deg``, bin view.
    :param bin_distance_m: as ``table_distance_m``, bin view.
    :param roll_deg: range of the camera's turn about its optical axis.
    :param wall_probability: chance of a back wall behind the table.
    :param bin_probability: chance that a bin view has a bin.
    :param sensor: the :class:`~.sensor.SensorModel` applied to the rendered depth.
    :param grasp: the :class:`~.labels.GraspConfig` of the labels.
    """

    camera: str = 'kinect'
    view: str = 'table'
    objects: tuple = (1, 6)
    kinds: tuple = tuple(OBJECT_KINDS)
    size_m: tuple = (0.02, 0.25)
    stack_probability: float = 0.12
    table_tilt_deg: tuple = (35.0, 60.0)
    table_distance_m: tuple = (0.8, 1.5)
    bin_tilt_deg: tuple = (0.0, 20.0)
    bin_distance_m: tuple = (0.3, 0.7)
    roll_deg: tuple = (-22.0, 22.0)
    wall_probability: float = 0.75
    bin_probability: float = 0.7
    sensor: SensorModel = field(default_factory=SensorModel)
    grasp: GraspConfig = field(default_factory=GraspConfig)

    def __post_init__(self):
        if self.camera not in CAMERAS:
            raise ValueError(f"camera must be one of {', '.join(CAMERAS)}, got '{self.camera}'")
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got '{self.view}'")
        lo, hi = self.objects
        if not 1 <= lo <= hi:
            raise ValueError(f'objects must be a range 1 <= low <= high, got {lo}-{hi}')
        unknown = set(self.kinds) - set(OBJECT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"unknown object kinds: {', '.join(sorted(unknown)) or 'none'}")


def random_intrinsics(rng, camera):
    """Intrinsics of a random camera of a kind (``kinect``, ``realsense`` or ``mixed``)."""
    if camera == 'mixed':
        camera = 'kinect' if rng.random() < 0.5 else 'realsense'
    if camera == 'kinect':
        width, height, fx = 640, 480, rng.uniform(570.0, 600.0)
    elif rng.random() < 0.5:
        width, height, fx = 640, 480, rng.uniform(600.0, 630.0)
    else:
        width, height, fx = 1280, 720, rng.uniform(630.0, 940.0)
    fy = fx * rng.uniform(0.995, 1.005)
    cx = (width - 1) / 2 + rng.uniform(-8, 8)
    cy = (height - 1) / 2 + rng.uniform(-8, 8)
    return CameraIntrinsics(float(fx), float(fy), float(cx), float(cy), width, height)


def random_scene(rng, config=None):
    """A random :class:`~.scene.Scene` (deterministic for a given generator state)."""
    config = config or SceneConfig()
    intrinsics = random_intrinsics(rng, config.camera)
    view = config.view
    if view == 'mixed':
        view = 'table' if rng.random() < 0.5 else 'bin'
    tilt_range, distance_range = ((config.table_tilt_deg, config.table_distance_m)
                                  if view == 'table' else
                                  (config.bin_tilt_deg, config.bin_distance_m))
    distance = rng.uniform(*distance_range)
    camera = Camera.looking_at_table(intrinsics, np.deg2rad(rng.uniform(*tilt_range)),
                                     distance, np.deg2rad(rng.uniform(*config.roll_deg)))
    objects = []
    if view == 'table':
        room = _table_room(rng, camera, config.wall_probability)
        region = None
    else:
        room = Room(x0=-1.0, x1=1.0, y0=-3.0, y1=rng.uniform(0.4, 1.0),
                    yaw=rng.uniform(-0.2, 0.2), floor_z=-rng.uniform(0.65, 0.8),
                    wall_y=None)
        region = None
        if rng.random() < config.bin_probability:
            objects, region = _bin(rng, distance)
    cell = float(np.clip(0.5 * distance / intrinsics.fx, 0.0004, 0.0015))
    count = int(rng.integers(config.objects[0], config.objects[1] + 1))
    kinds = list(config.kinds)
    weights = np.array([OBJECT_KINDS[k] for k in kinds])
    weights /= weights.sum()
    placed = 0
    for _ in range(count * 4):
        if placed == count:
            break
        kind = kinds[rng.choice(len(kinds), p=weights)]
        shape = make_shape(kind, rng, config.size_m, cell)
        obj = _place(rng, shape, camera, room, objects, region, config.stack_probability)
        if obj is not None:
            objects.append(obj)
            placed += 1
    return Scene(camera, room, objects)


def _table_room(rng, camera, wall_probability):
    """A table whose edges the camera sees where Cornell's did: the far edge in the upper
    rows (mostly), a side edge or none, and a back wall and the floor beyond them."""
    k = camera.intrinsics
    w, h = k.width, k.height

    def table_point(u, v, fallback):
        point = _table_point_at(camera, u, v)
        return fallback if point is None else point

    far = 3.0
    if rng.random() < 0.85:
        far = table_point(k.cx, rng.uniform(0.08, 0.4) * h, (0.0, far))[1]
    right = table_point(rng.uniform(0.75, 1.3) * w, h / 2, (1.0, 0.0))[0]
    left = table_point(rng.uniform(-0.3, 0.25) * w, h / 2, (-1.0, 0.0))[0]
    wall_y = far + rng.uniform(0.0, 0.25) if rng.random() < wall_probability else None
    return Room(x0=min(left, -0.1), x1=max(right, 0.1), y0=-3.0, y1=max(far, 0.1),
                yaw=rng.uniform(-0.25, 0.25), floor_z=-rng.uniform(0.65, 0.8), wall_y=wall_y,
                wall_top=rng.uniform(0.2, 1.5))


def _table_point_at(camera, u, v):
    """The table-plane point (x, y) seen at a pixel, or None above the horizon."""
    d = camera.rays(u, v)
    if d[2] >= -1e-6:
        return None
    t = -camera.position[2] / d[2]
    return camera.position[:2] + t * d[:2]


def _bin(rng, distance):
    """A bin around the table's origin: four walls (not graspable) and its inside region."""
    scale = distance / 0.5
    length = rng.uniform(0.25, 0.45) * min(scale, 1.3)
    width = rng.uniform(0.2, 0.35) * min(scale, 1.3)
    height = rng.uniform(0.05, 0.15)
    wall = 0.01
    yaw = rng.uniform(-0.3, 0.3)
    walls = []
    turn = rotation_z(yaw)[:2, :2]
    for cx, cy, sx, sy in ((0, (width + wall) / 2, length + 2 * wall, wall),
                           (0, -(width + wall) / 2, length + 2 * wall, wall),
                           ((length + wall) / 2, 0, wall, width),
                           (-(length + wall) / 2, 0, wall, width)):
        x, y = turn @ [cx, cy]
        walls.append(PlacedObject(Box(sx, sy, height), x, y, yaw, graspable=False))
    return walls, (length, width, yaw)


def _loguniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def smooth_curve(rng, length, curl, points=80, closed=False):
    """A smooth random curve (points, 2) of a given length; ``curl`` scales its turning."""
    if closed:
        t = np.linspace(0, 2 * np.pi, points, endpoint=False)
        r = np.ones(points)
        for k in range(2, 5):
            r += rng.uniform(0, 0.25 / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
        ratio = rng.uniform(0.5, 1.0)
        curve = np.stack([r * np.cos(t), ratio * r * np.sin(t)], 1)
        perimeter = np.linalg.norm(np.diff(np.vstack([curve, curve[:1]]), axis=0), axis=1).sum()
        return curve * length / perimeter
    turning = rng.normal(0, 1, points)
    kernel = np.exp(-0.5 * (np.arange(-12, 13) / 5.0) ** 2)
    turning = np.convolve(turning, kernel / kernel.sum(), mode='same') * curl
    heading = np.cumsum(turning) * (length / points) + rng.uniform(0, 2 * np.pi)
    steps = np.stack([np.cos(heading), np.sin(heading)], 1) * (length / points)
    return np.vstack([[0, 0], np.cumsum(steps, axis=0)])


def _fit(curve, extent):
    """Scale a curve down so that its bounding box fits ``extent`` metres."""
    span = (curve.max(0) - curve.min(0)).max()
    return curve * min(1.0, extent / max(span, 1e-9))


def make_shape(kind, rng, size_m=(0.02, 0.25), cell=0.001):
    """A random shape of a kind (see :data:`OBJECT_KINDS`), its footprint within ``size_m``."""
    lo, hi = size_m
    hi = max(hi, lo)

    def extent(a, b):  # a footprint extent within the kind's own range and size_m
        a, b = max(a, lo), min(b, hi)
        return float(rng.uniform(a, max(a, b)))

    if kind == 'box':
        length = extent(0.03, 0.25)
        width = max(min(length * rng.uniform(0.2, 1.0), hi), max(lo, 0.015))
        return Box(length, width, _loguniform(rng, 0.01, 0.12))
    if kind == 'cylinder':
        radius = extent(0.02, 0.1) / 2
        return Cylinder(radius, rng.uniform(0.03, 0.2))
    if kind == 'cylinder_lying':
        length = extent(0.05, 0.25)
        radius = min(rng.uniform(0.01, 0.04), length / 3)
        return Cylinder(radius, length, lying=True)
    if kind == 'ellipsoid':
        a = extent(0.02, 0.14) / 2
        if rng.random() < 0.4:
            return Ellipsoid(a, a, a)
        b = a * rng.uniform(0.5, 1.0)
        return Ellipsoid(a, b, min(a, b) * rng.uniform(0.5, 1.0))
    if kind == 'cup':
        radius = extent(0.06, 0.1) / 2
        return Cup(radius, rng.uniform(0.06, 0.12), rng.uniform(0.003, 0.006),
                   rng.uniform(0.004, 0.01))
    if kind == 'bowl':
        radius = extent(0.1, 0.2) / 2
        return Bowl(radius, radius * rng.uniform(0.35, 0.6), rng.uniform(0.003, 0.006))
    if kind == 'ring':
        radius = extent(0.05, 0.12) / 2
        return Cup(radius, rng.uniform(0.015, 0.05), min(rng.uniform(0.008, 0.02), radius / 2),
                   0.0)
    if kind == 'extrusion':
        size = extent(0.04, 0.25)
        t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
        r = np.ones_like(t)
        for k in range(2, 6):
            r += rng.uniform(0, 0.35 / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
        outline = np.stack([r * np.cos(t), rng.uniform(0.3, 1.0) * r * np.sin(t)], 1)
        outline *= size / (outline.max(0) - outline.min(0)).max()
        return extrusion(outline, _loguniform(rng, 0.008, 0.06), cell)
    if kind == 'rod':
        length = extent(0.08, 0.25)
        radius = rng.uniform(0.004, 0.015)
        if rng.random() < 0.6:
            return Cylinder(radius, length, lying=True)
        curve = _fit(smooth_curve(rng, length, rng.uniform(1.0, 6.0)), hi)
        return tube(curve, radius, cell, kind='rod')
    if kind == 'strap':
        length = extent(0.1, 0.25) * rng.uniform(1.0, 1.3)
        curve = _fit(smooth_curve(rng, length, rng.uniform(2.0, 10.0)), hi)
        return strap(curve, rng.uniform(0.01, 0.04), rng.uniform(0.002, 0.006), cell)
    if kind == 'cable':
        length = rng.uniform(0.15, 0.5)
        curve = _fit(smooth_curve(rng, length, rng.uniform(6.0, 20.0)), extent(0.08, 0.25))
        return tube(curve, rng.uniform(0.002, 0.006), cell, kind='cable')
    if kind == 'loop':
        size = extent(0.05, 0.2)
        curve = smooth_curve(rng, size * 2.6, 0.0, closed=True)
        curve = _fit(curve, size)
        return tube(curve, rng.uniform(0.003, 0.01), cell, closed=True, kind='loop')
    raise ValueError(f'unknown object kind: {kind}')


def _obb_overlap(a, b, gap=0.0):
    """Do two oriented rectangles (4, 2) overlap (separating axis test), with ``gap`` more?"""
    for poly in (a, b):
        for k in range(2):
            edge = poly[k + 1] - poly[k]
            axis = np.array([-edge[1], edge[0]]) / max(np.hypot(*edge), 1e-12)
            pa, pb = a @ axis, b @ axis
            if pa.max() + gap <= pb.min() or pb.max() + gap <= pa.min():
                return False
    return True


def _table_point(rng, camera):
    """A table point that the camera sees in the middle of its image."""
    k = camera.intrinsics
    return _table_point_at(camera, rng.uniform(0.25, 0.75) * k.width,
                           rng.uniform(0.3, 0.8) * k.height)


def _place(rng, shape, camera, room, objects, region, stack_probability):
    """Pose a shape on the table (or on a flat-topped object) where it overlaps nothing;
    None after a few tries."""
    supports = [o for o in objects if o.graspable and o.z == 0 and o.shape.flat_top
                and o.shape.footprint_radius() > shape.footprint_radius()]
    if supports and rng.random() < stack_probability:
        support = supports[rng.integers(len(supports))]
        for _ in range(10):
            local = rng.uniform(-0.5, 0.5, 2) * [support.shape.half_x, support.shape.half_y]
            xy = rotation_z(support.yaw)[:2, :2] @ local + [support.x, support.y]
            obj = PlacedObject(shape, xy[0], xy[1], rng.uniform(0, 2 * np.pi), support.top)
            fp = obj.footprint()
            # on the support's top, overhanging it by 1 cm at most
            local = (fp - [support.x, support.y]) @ rotation_z(-support.yaw)[:2, :2].T
            inside = (np.all(np.abs(local[:, 0]) <= support.shape.half_x + 0.01)
                      and np.all(np.abs(local[:, 1]) <= support.shape.half_y + 0.01))
            if inside and not any(_obb_overlap(fp, o.footprint()) for o in objects
                                  if o is not support and o.top > support.top - 1e-6):
                return obj
    for _ in range(20):
        if region is None:
            xy = _table_point(rng, camera)
            if xy is None:
                continue
        else:
            length, width, yaw = region
            local = rng.uniform(-0.5, 0.5, 2) * [length, width]
            xy = rotation_z(yaw)[:2, :2] @ local
        obj = PlacedObject(shape, xy[0], xy[1], rng.uniform(0, 2 * np.pi), 0.0)
        fp = obj.footprint()
        if not np.all(room.on_table(fp[:, 0], fp[:, 1])):
            continue
        if region is not None:
            length, width, yaw = region
            local = (fp - 0) @ rotation_z(-yaw)[:2, :2].T
            if np.any(np.abs(local[:, 0]) > length / 2) or np.any(np.abs(local[:, 1]) > width / 2):
                continue
        if any(_obb_overlap(fp, o.footprint()) for o in objects):
            continue
        return obj
    return None
