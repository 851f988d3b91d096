"""A synthetic tabletop scene and its noise-free rendering.

Frames: the *table frame* has its origin on the table top where the camera's optical axis meets
it, z up along the table's normal and y pointing away from the camera (to the table's far
side). The camera frame is the optical one of the rest of the package (x right, y down, z along
the optical axis). Depth is rendered by casting one ray per pixel through the pinhole model
against the room (table top, floor, back wall: planes) and every object (see
:mod:`.shapes`); the nearest hit wins, so occlusion is exact, and the ray parameter is the depth
along the optical axis itself.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..core.geometry import CameraIntrinsics

#: Labels of the id image: nothing, table top, floor, wall; objects are OBJECT_ID + index.
NOTHING, TABLE, FLOOR, WALL, OBJECT_ID = 0, 1, 2, 3, 10


def rotation_z(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera posed in the table frame.

    :param intrinsics: the depth image's :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`
        (with its width and height).
    :param rotation: 3x3, columns the camera's x, y, z axes in the table frame.
    :param position: (3,) the camera's centre in the table frame, metres.
    """

    intrinsics: CameraIntrinsics
    rotation: np.ndarray
    position: np.ndarray

    @classmethod
    def looking_at_table(cls, intrinsics, tilt_rad, distance_m, roll_rad=0.0):
        """A camera whose optical axis meets the table's origin ``distance_m`` away, at
        ``tilt_rad`` from the table's normal (0 = straight down), turned by ``roll_rad`` about
        its axis; the image's upper rows look towards the table's far side (+y)."""
        st, ct = np.sin(tilt_rad), np.cos(tilt_rad)
        z = np.array([0.0, st, -ct])
        x = np.array([1.0, 0.0, 0.0])
        y = np.cross(z, x)
        cr, sr = np.cos(roll_rad), np.sin(roll_rad)
        x, y = cr * x + sr * y, -sr * x + cr * y
        return cls(intrinsics, np.stack([x, y, z], axis=1), -distance_m * z)

    @property
    def width(self):
        return int(self.intrinsics.width)

    @property
    def height(self):
        return int(self.intrinsics.height)

    def rays(self, u, v):
        """Directions (N, 3) in the table frame of pixels, scaled so that the ray parameter is
        the depth along the optical axis."""
        k = self.intrinsics
        d = np.stack([(np.asarray(u, np.float64) - k.cx) / k.fx,
                      (np.asarray(v, np.float64) - k.cy) / k.fy,
                      np.ones(np.shape(u))], axis=-1)
        return d @ self.rotation.T

    def to_camera(self, points):
        """Table-frame points (..., 3) in the camera frame."""
        return (np.asarray(points, np.float64) - self.position) @ self.rotation

    def project(self, points):
        """Pixels (..., 2) and depths (...) of table-frame points."""
        p = self.to_camera(points)
        with np.errstate(divide='ignore', invalid='ignore'):
            return self.intrinsics.project(p), p[..., 2]

    def tilt_deg(self):
        """Angle between the optical axis and the table's downward normal, degrees."""
        return float(np.degrees(np.arccos(np.clip(-self.rotation[2, 2], -1, 1))))

    def describe(self):
        k = self.intrinsics
        return {'fx': k.fx, 'fy': k.fy, 'cx': k.cx, 'cy': k.cy, 'width': k.width,
                'height': k.height, 'tilt_deg': round(self.tilt_deg(), 3),
                'position_m': [round(float(v), 5) for v in self.position],
                'rotation': [[round(float(v), 6) for v in row] for row in self.rotation]}


@dataclass(frozen=True)
class Room:
    """The table top and what lies beyond its edges.

    The table is the rectangle ``x0 <= x <= x1, y0 <= y <= y1`` of the table frame turned by
    ``yaw`` about the vertical; the floor is the plane ``z = floor_z`` (below the table); the
    back wall, when there is one, stands at ``y = wall_y`` (same turned frame) from the floor up
    to ``wall_top``.
    """

    x0: float = -1.0
    x1: float = 1.0
    y0: float = -2.0
    y1: float = 1.0
    yaw: float = 0.0
    floor_z: float = -0.75
    wall_y: float = None
    wall_top: float = 1.0

    def cast(self, origin, dx, dy, dz):
        """Depth (ray parameter, inf on a miss) and id (:data:`TABLE`, :data:`FLOOR`,
        :data:`WALL`) of rays from one origin (3,) with direction components ``dx, dy, dz``
        (arrays of one shape, table frame)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        ox = c * origin[0] + s * origin[1]
        oy = -s * origin[0] + c * origin[1]
        oz = origin[2]
        rx = c * dx + s * dy  # the directions in the table's own (turned) frame
        ry = -s * dx + c * dy
        with np.errstate(divide='ignore', invalid='ignore'):
            down = dz < 0
            t_table = np.where(down, -oz / dz, np.inf)
            px = ox + t_table * rx
            py = oy + t_table * ry
            on_table = (px >= self.x0) & (px <= self.x1) & (py >= self.y0) & (py <= self.y1)
            t = np.where(down, (self.floor_z - oz) / dz, np.inf)
            ids = np.where(down, FLOOR, NOTHING).astype(np.int16)
            if self.wall_y is not None:
                t_wall = np.where(ry > 0, (self.wall_y - oy) / ry, np.inf)
                z_wall = oz + t_wall * dz
                wall = (t_wall < t) & (z_wall <= self.wall_top)
                t = np.where(wall, t_wall, t)
                ids[wall] = WALL
            table = on_table & down & (t_table < t)
        t[table] = t_table[table]
        ids[table] = TABLE
        return t, ids

    def on_table(self, x, y):
        """Whether table-frame points lie on the table top."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        px = c * np.asarray(x) + s * np.asarray(y)
        py = -s * np.asarray(x) + c * np.asarray(y)
        return (px >= self.x0) & (px <= self.x1) & (py >= self.y0) & (py <= self.y1)

    def describe(self):
        return {k: (None if v is None else round(float(v), 5)) for k, v in self.__dict__.items()}


@dataclass
class PlacedObject:
    """A shape posed on the table: its base centre at ``(x, y, z)`` of the table frame (``z``
    is the height it rests at: 0 on the table, another object's top when stacked), turned by
    ``yaw`` about the vertical.

    :param graspable: False for scenery (a bin's walls): never labelled, always an obstacle.
    """

    shape: object
    x: float
    y: float
    yaw: float = 0.0
    z: float = 0.0
    graspable: bool = True

    def to_local(self, points):
        """Table-frame points (..., 3) in the shape's frame."""
        return (np.asarray(points, np.float64) - [self.x, self.y, self.z]) @ rotation_z(
            self.yaw)

    def directions_to_local(self, d):
        return np.asarray(d, np.float64) @ rotation_z(self.yaw)

    def corners(self):
        """The 8 corners (8, 3) of its oriented bounding box in the table frame."""
        s = self.shape
        zmin = float(getattr(s, 'z_min', 0.0))
        local = np.array([[sx * s.half_x, sy * s.half_y, z] for sx in (-1, 1)
                          for sy in (-1, 1) for z in (zmin, s.height)])
        return local @ rotation_z(self.yaw).T + [self.x, self.y, self.z]

    def footprint(self):
        """Its footprint's oriented rectangle (4, 2) in the table frame."""
        return self.corners()[::2, :2][[0, 1, 3, 2]]

    @property
    def top(self):
        return self.z + self.shape.height

    def describe(self):
        out = self.shape.describe()
        out.update({'x': round(float(self.x), 5), 'y': round(float(self.y), 5),
                    'z': round(float(self.z), 5), 'yaw': round(float(self.yaw), 5),
                    'graspable': bool(self.graspable)})
        return out


@dataclass
class Scene:
    """A camera, a room and the objects on the table."""

    camera: Camera
    room: Room = field(default_factory=Room)
    objects: list = field(default_factory=list)


#: The camera of :func:`make_scene` by default: Kinect-like, 0.7 m straight above the table.
TOP_DOWN_INTRINSICS = CameraIntrinsics(585.0, 585.0, 319.5, 239.5, 640, 480)


def make_scene(objects, camera=None, room=None):
    """A scene of explicit objects (:class:`PlacedObject` list) on a large table, seen by
    ``camera`` (default: Kinect-like intrinsics, 0.7 m straight above the table's origin)."""
    if camera is None:
        camera = Camera.looking_at_table(TOP_DOWN_INTRINSICS, 0.0, 0.7)
    return Scene(camera, room or Room(), list(objects))


@dataclass
class Rendering:
    """A noise-free rendering: depth along the optical axis (metres, inf where nothing is) and
    the id of what each pixel sees (see :data:`OBJECT_ID`)."""

    depth: np.ndarray
    ids: np.ndarray


def render(scene):
    """Ray cast a scene: one ray per pixel centre, nearest hit of the room and the objects.

    An object's rays are only those of the pixels inside the projection of its bounding box.
    """
    cam = scene.camera
    k = cam.intrinsics
    h, w = cam.height, cam.width
    x = ((np.arange(w) - k.cx) / k.fx)[None, :]
    y = ((np.arange(h) - k.cy) / k.fy)[:, None]
    r = cam.rotation
    dx, dy, dz = (r[i, 0] * x + r[i, 1] * y + r[i, 2] for i in range(3))
    depth, ids = scene.room.cast(cam.position, dx, dy, dz)
    for index, obj in enumerate(scene.objects):
        pixels = _pixels_of(cam, obj)
        if pixels is None:
            continue
        rows, cols = pixels
        # the rays in the object's frame: turned about the vertical, from one origin
        c, s = np.cos(obj.yaw), np.sin(obj.yaw)
        wx, wy = dx[rows, cols], dy[rows, cols]
        d = np.stack([c * wx + s * wy, c * wy - s * wx, dz[rows, cols]], axis=1)
        origin = np.broadcast_to(obj.to_local(cam.position), d.shape)
        t = obj.shape.hit(origin, d)
        nearer = t < depth[rows, cols]
        depth[rows[nearer], cols[nearer]] = t[nearer]
        ids[rows[nearer], cols[nearer]] = OBJECT_ID + index
    return Rendering(depth.astype(np.float32), ids)


def _pixels_of(camera, obj, margin=2):
    """Rows and columns (index arrays) of the pixels an object can cover: inside the convex
    hull of its bounding box's projection, widened by ``margin`` pixels; None for none."""
    box = _pixel_box(camera, obj, margin)
    if box is None:
        return None
    u0, u1, v0, v1 = box
    pixels, z = camera.project(obj.corners())
    mask = np.zeros((v1 - v0, u1 - u0), np.uint8)
    if np.any(z <= 1e-6) or not np.all(np.isfinite(pixels)):
        mask[:] = 1
    else:
        hull = cv2.convexHull(np.round((pixels - [u0, v0]) * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1, cv2.LINE_8, 4)
        mask = cv2.dilate(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    return rows + v0, cols + u0


def _pixel_box(camera, obj, margin=2):
    """The image rows and columns an object can cover: its bounding box's projection."""
    pixels, z = camera.project(obj.corners())
    h, w = camera.height, camera.width
    if np.any(z <= 1e-6) or not np.all(np.isfinite(pixels)):
        return 0, w, 0, h
    u0 = max(int(np.floor(pixels[:, 0].min())) - margin, 0)
    u1 = min(int(np.ceil(pixels[:, 0].max())) + margin + 1, w)
    v0 = max(int(np.floor(pixels[:, 1].min())) - margin, 0)
    v1 = min(int(np.ceil(pixels[:, 1].max())) + margin + 1, h)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, u1, v0, v1
