"""Image geometry: the crop/resize mapping and the pinhole camera model.

Pixel coordinates follow the OpenCV convention: ``u`` is the column, ``v`` the row, and the
centre of pixel ``(i, j)`` sits at ``(u, v) = (j, i)``. All maths here is plain numpy.
"""

from dataclasses import dataclass

import numpy as np

#: Smallest usable focal length, pixels.
MIN_FOCAL_PX = 1.0


class GeometryError(ValueError):
    """Raised when an image, crop or camera model cannot be used."""


@dataclass(frozen=True)
class CropTransform:
    """Maps pixels between a source image and the square network input cut out of it.

    The network input is the source window ``[x0, x0 + size) x [y0, y0 + size)`` resized to
    ``out_size x out_size``. Pixel centres map exactly both ways (the convention of
    ``cv2.resize``), so ``to_source(to_network(p)) == p``.

    :param x0: left column of the window in source pixels.
    :param y0: top row of the window in source pixels.
    :param size: side of the square window in source pixels.
    :param out_size: side of the network input in pixels.
    """

    x0: int
    y0: int
    size: int
    out_size: int

    @property
    def scale(self):
        """Source pixels per network pixel."""
        return self.size / self.out_size

    @classmethod
    def centred(cls, image_width, image_height, crop_size, out_size,
                offset_x=0, offset_y=0):
        """Build the transform for a square window centred in the image, optionally shifted.

        :param image_width: source width in pixels.
        :param image_height: source height in pixels.
        :param crop_size: window side in source pixels; 0 takes the largest centred square.
        :param out_size: network input side in pixels.
        :param offset_x: shift of the window centre to the right, in source pixels.
        :param offset_y: shift of the window centre downwards, in source pixels.
        :raises GeometryError: when the window does not fit inside the image.
        """
        if crop_size <= 0:
            crop_size = min(image_width, image_height)
        if crop_size > image_width or crop_size > image_height:
            raise GeometryError(
                f'image {image_width}x{image_height} is smaller than the crop '
                f'{crop_size}x{crop_size}')
        x0 = (image_width - crop_size) // 2 + int(offset_x)
        y0 = (image_height - crop_size) // 2 + int(offset_y)
        if x0 < 0 or y0 < 0 or x0 + crop_size > image_width or y0 + crop_size > image_height:
            raise GeometryError(
                f'crop {crop_size}x{crop_size} shifted by ({offset_x}, {offset_y}) px leaves '
                f'the {image_width}x{image_height} image')
        return cls(int(x0), int(y0), int(crop_size), int(out_size))

    def to_network(self, uv):
        """Map source pixel coordinates (..., 2) to network pixel coordinates."""
        uv = np.asarray(uv, dtype=np.float64)
        offset = np.array([self.x0, self.y0], dtype=np.float64)
        return (uv - offset + 0.5) / self.scale - 0.5

    def to_source(self, uv):
        """Map network pixel coordinates (..., 2) to source pixel coordinates."""
        uv = np.asarray(uv, dtype=np.float64)
        offset = np.array([self.x0, self.y0], dtype=np.float64)
        return (uv + 0.5) * self.scale - 0.5 + offset

    def crop(self, image):
        """Cut the window out of a source image (a view, not a copy)."""
        return image[self.y0:self.y0 + self.size, self.x0:self.x0 + self.size]

    def affine_to_network(self):
        """Return the 2x3 matrix ``M`` with ``[u', v'] = M @ [u, v, 1]`` (source to network)."""
        s = 1.0 / self.scale
        return np.array([[s, 0.0, (0.5 - self.x0) * s - 0.5],
                         [0.0, s, (0.5 - self.y0) * s - 0.5]])


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of the depth camera, in pixels.

    :param fx: focal length along u, pixels.
    :param fy: focal length along v, pixels.
    :param cx: principal point column, pixels.
    :param cy: principal point row, pixels.
    :param width: image width the intrinsics belong to, pixels.
    :param height: image height the intrinsics belong to, pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0

    @classmethod
    def from_k(cls, k, width=0, height=0):
        """Build from a row-major 3x3 camera matrix (CameraInfo ``k``).

        :raises GeometryError: when the focal lengths are not positive and finite.
        """
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise GeometryError(f'K must have 9 elements, got {k.size}')
        intrinsics = cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]),
                         int(width), int(height))
        intrinsics.validate()
        return intrinsics

    def validate(self, image_width=None, image_height=None):
        """Check the model is usable, and matches an image size when one is given.

        :raises GeometryError: with the reason.
        """
        values = np.array([self.fx, self.fy, self.cx, self.cy])
        # a focal length under one pixel is no real camera (a field of view near 180 degrees
        # for any image wider than a few pixels); tiny ones back-project pixels to points that
        # overflow the float32 fields of the published messages
        if not np.all(np.isfinite(values)) or self.fx < MIN_FOCAL_PX or self.fy < MIN_FOCAL_PX:
            raise GeometryError(
                f'camera matrix is unusable (fx={self.fx}, fy={self.fy}, cx={self.cx}, '
                f'cy={self.cy}); is camera_info calibrated?')
        if image_width is not None and self.width and self.height and (
                self.width != image_width or self.height != image_height):
            raise GeometryError(
                f'camera_info is for {self.width}x{self.height} but the depth image is '
                f'{image_width}x{image_height}')

    def back_project(self, u, v, depth_m):
        """Back-project pixels at depths along the optical axis to camera-frame points.

        :param u: column(s), pixels.
        :param v: row(s), pixels.
        :param depth_m: depth(s) along the optical axis (Z), metres.
        :returns: array (..., 3) of points in metres (x right, y down, z forward).
        """
        u, v, z = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(v, np.float64),
                                      np.asarray(depth_m, np.float64))
        x = (u - self.cx) * z / self.fx
        y = (v - self.cy) * z / self.fy
        return np.stack([x, y, z], axis=-1)

    def project(self, points):
        """Project camera-frame points (..., 3), metres, to pixel coordinates (..., 2)."""
        points = np.asarray(points, dtype=np.float64)
        z = points[..., 2]
        return np.stack([points[..., 0] * self.fx / z + self.cx,
                         points[..., 1] * self.fy / z + self.cy], axis=-1)


#: The Kinect v1 approximation that the Cornell grasp frames (640x480) are used with:
#: fx = fy = 585 px, principal point at the image centre (320, 240) px.
CORNELL_INTRINSICS = CameraIntrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)


def unit_quaternion(quaternion):
    """The unit quaternion (x, y, z, w) of the same rotation, with w >= 0.

    :param quaternion: (4,) (x, y, z, w), any non-zero length.
    :returns: float64 (4,) of unit length.
    """
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q)
    return -q if q[3] < 0 else q
