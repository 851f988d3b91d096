"""Image geometry: the crop/resize mapping and the pinhole camera model.

Pixel coordinates follow the OpenCV convention: ``u`` is the column, ``v`` the row, and the
centre of pixel ``(i, j)`` sits at ``(u, v) = (j, i)``. The maths is plain numpy; lens
distortion goes through OpenCV, as in ``image_geometry.PinholeCameraModel``.
"""

from dataclasses import dataclass

import cv2
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


#: Distortion model names of sensor_msgs/CameraInfo (``sensor_msgs/distortion_models.hpp``).
PLUMB_BOB = 'plumb_bob'
RATIONAL_POLYNOMIAL = 'rational_polynomial'
EQUIDISTANT = 'equidistant'
#: Coefficient counts OpenCV's pinhole distortion (plumb_bob, rational_polynomial) accepts:
#: (k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4[, tau_x, tau_y]]]]).
PINHOLE_DISTORTION_SIZES = (4, 5, 8, 12, 14)
#: Coefficient count of the equidistant (fisheye) model: (k1, k2, k3, k4).
EQUIDISTANT_DISTORTION_SIZE = 4

#: Termination of OpenCV's iterative pinhole undistortion: at most this many iterations, or
#: once the undistorted estimate re-distorts to within UNDISTORT_EPSILON_PX of the pixel.
UNDISTORT_MAX_ITERATIONS = 100
UNDISTORT_EPSILON_PX = 1e-10
#: Termination of the fisheye undistortion (Newton steps on the incidence angle, radians).
FISHEYE_EPSILON_RAD = 1e-12
#: An undistorted pixel must re-distort to within this distance of itself, pixels; else it
#: lies where the model cannot be inverted and back-projects to NaN.
UNDISTORT_TOLERANCE_PX = 0.01

# OpenCV 5 takes the termination criteria in undistortPoints; OpenCV 4 in undistortPointsIter.
# fisheye.undistortPoints takes them from OpenCV 4.7 on (before: 10 Newton steps, 1e-8 rad).
_UNDISTORT_TAKES_CRITERIA = 'criteria' in (cv2.undistortPoints.__doc__ or '')
_FISHEYE_TAKES_CRITERIA = 'criteria' in (cv2.fisheye.undistortPoints.__doc__ or '')


def _criteria(epsilon):
    return (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, UNDISTORT_MAX_ITERATIONS, epsilon)


@dataclass(frozen=True)
class CameraIntrinsics:
    """Camera model of the depth image: a pinhole camera matrix and, optionally, lens distortion.

    Pixels of the depth image map to rays through ``fx, fy, cx, cy``. When ``distortion``
    holds a non-zero coefficient the image is a raw (unrectified) one: pixel coordinates are
    first undistorted with ``distortion_model`` and the coefficients (OpenCV's
    ``undistortPoints``, or ``fisheye.undistortPoints`` for ``equidistant``), as
    ``image_geometry.PinholeCameraModel.rectifyPoint`` does. All-zero or empty coefficients
    mean no distortion, whatever the model name. Build the model of a CameraInfo with
    :meth:`from_calibration`.

    :param fx: focal length along u, pixels.
    :param fy: focal length along v, pixels.
    :param cx: principal point column, pixels.
    :param cy: principal point row, pixels.
    :param width: image width the intrinsics belong to, pixels (0 = not checked).
    :param height: image height the intrinsics belong to, pixels (0 = not checked).
    :param distortion_model: ``plumb_bob``, ``rational_polynomial`` or ``equidistant``; any
        name is accepted when the coefficients are all zero.
    :param distortion: distortion coefficients (CameraInfo ``d``), dimensionless.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0
    distortion_model: str = ''
    distortion: tuple = ()

    def __post_init__(self):
        coefficients = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        object.__setattr__(self, 'distortion', tuple(float(c) for c in coefficients))
        object.__setattr__(self, 'distortion_model', str(self.distortion_model))

    @classmethod
    def from_k(cls, k, width=0, height=0):
        """Build a distortion-free model from a row-major 3x3 camera matrix (CameraInfo ``k``).

        :raises GeometryError: when the focal lengths are not positive and finite.
        """
        k = _flat(k, 9, 'K')
        intrinsics = cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]),
                         int(width), int(height))
        intrinsics.validate()
        return intrinsics

    @classmethod
    def from_calibration(cls, k, d=(), distortion_model='', p=None, width=0, height=0,
                         rectified=True):
        """Build the model of a depth image from its calibration (the CameraInfo fields).

        A rectified image (``rectified`` true: aligned_depth_to_color, image_rect) is
        undistorted already and maps through P's ``fx', fy', cx', cy'``, as
        ``image_geometry.PinholeCameraModel.projectPixelTo3dRay`` does; D is not used. An
        all-zero P, as an uncalibrated or unfilled CameraInfo carries, falls back to K. P's
        translation column (a stereo baseline) is not applied: points are in the depth
        image's own (rectified) frame.

        A raw image (``rectified`` false) maps through K after undistorting the pixel
        coordinates with D; points are in the raw camera's frame (the frame its depth is
        measured in), so the rectification rotation R is not applied either.

        :param k: row-major 3x3 camera matrix K (9 values), pixels.
        :param d: distortion coefficients D, dimensionless; empty or all zero = none.
        :param distortion_model: ``plumb_bob``, ``rational_polynomial`` or ``equidistant``.
        :param p: row-major 3x4 projection matrix P (12 values), pixels; None = all zero.
        :param width: image width, pixels (0 = not checked).
        :param height: image height, pixels (0 = not checked).
        :param rectified: whether the depth image is rectified.
        :raises GeometryError: when the chosen matrix is unusable, or D is non-zero with an
            unknown model or a coefficient count the model does not take.
        """
        k = _flat(k, 9, 'K')
        if rectified:
            p = np.zeros(12) if p is None else _flat(p, 12, 'P')
            if np.any(p != 0):
                intrinsics = cls(float(p[0]), float(p[5]), float(p[2]), float(p[6]),
                                 int(width), int(height))
            else:
                intrinsics = cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]),
                                 int(width), int(height))
        else:
            intrinsics = cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]),
                             int(width), int(height), distortion_model, d)
        intrinsics.validate()
        return intrinsics

    @property
    def distorted(self):
        """True when pixel coordinates need undistorting (a non-zero coefficient)."""
        return any(c != 0.0 for c in self.distortion)

    @property
    def camera_matrix(self):
        """The 3x3 camera matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, pixels."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

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
        if self.distorted:
            self._validate_distortion()
        if image_width is not None and self.width and self.height and (
                self.width != image_width or self.height != image_height):
            raise GeometryError(
                f'camera_info is for {self.width}x{self.height} but the depth image is '
                f'{image_width}x{image_height}')

    def _validate_distortion(self):
        model, count = self.distortion_model, len(self.distortion)
        if not np.all(np.isfinite(self.distortion)):
            raise GeometryError(f'distortion coefficients are not finite: {self.distortion}')
        if model in (PLUMB_BOB, RATIONAL_POLYNOMIAL):
            if count not in PINHOLE_DISTORTION_SIZES:
                raise GeometryError(
                    f"distortion model '{model}' takes "
                    f"{', '.join(map(str, PINHOLE_DISTORTION_SIZES))} coefficients, got {count}")
        elif model == EQUIDISTANT:
            if count != EQUIDISTANT_DISTORTION_SIZE:
                raise GeometryError(
                    f"distortion model '{model}' takes {EQUIDISTANT_DISTORTION_SIZE} "
                    f'coefficients, got {count}')
        else:
            raise GeometryError(
                f"unknown distortion model '{model}' with non-zero coefficients "
                f'{self.distortion}; supported: {PLUMB_BOB}, {RATIONAL_POLYNOMIAL}, '
                f'{EQUIDISTANT}')

    def undistort(self, u, v):
        """Normalised image coordinates ``(x/z, y/z)`` of pixels, lens distortion removed.

        :param u: column(s), pixels.
        :param v: row(s), pixels.
        :returns: array (..., 2), dimensionless; NaN for non-finite pixels and for pixels
            the distortion model cannot invert (no point re-distorts to them).
        :raises GeometryError: when the distortion model is unknown.
        """
        u, v = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(v, np.float64))
        out = np.full(u.shape + (2,), np.nan)
        if not self.distorted:
            out[..., 0] = (u - self.cx) / self.fx
            out[..., 1] = (v - self.cy) / self.fy
            return out
        self._validate_distortion()
        finite = np.isfinite(u) & np.isfinite(v)
        if not finite.any():
            return out
        pixels = np.stack([u[finite], v[finite]], axis=-1).reshape(-1, 1, 2)
        k, d = self.camera_matrix, np.array(self.distortion)
        if self.distortion_model == EQUIDISTANT:
            if _FISHEYE_TAKES_CRITERIA:
                normalised = cv2.fisheye.undistortPoints(
                    pixels, k, d, criteria=_criteria(FISHEYE_EPSILON_RAD))
            else:
                normalised = cv2.fisheye.undistortPoints(pixels, k, d)
        elif _UNDISTORT_TAKES_CRITERIA:
            normalised = cv2.undistortPoints(pixels, k, d,
                                             criteria=_criteria(UNDISTORT_EPSILON_PX))
        else:
            normalised = cv2.undistortPointsIter(pixels, k, d, np.eye(3), np.eye(3),
                                                 _criteria(UNDISTORT_EPSILON_PX))
        normalised = normalised.reshape(-1, 2)
        # beyond the range where the model is invertible the iteration ends elsewhere (the
        # fisheye one on the mirrored side): keep only estimates that re-distort to the pixel
        rays = np.concatenate([normalised, np.ones((len(normalised), 1))], axis=1)
        with np.errstate(over='ignore', invalid='ignore'):  # pixels far out: inf, NaN
            error = np.hypot(*(self._distort(rays) - pixels.reshape(-1, 2)).T)
        normalised[~(error <= UNDISTORT_TOLERANCE_PX)] = np.nan
        out[finite] = normalised
        return out

    def back_project(self, u, v, depth_m):
        """Back-project pixels at depths along the optical axis to camera-frame points.

        Raw pixels are undistorted first (see :meth:`undistort`).

        :param u: column(s), pixels.
        :param v: row(s), pixels.
        :param depth_m: depth(s) along the optical axis (Z), metres.
        :returns: array (..., 3) of points in metres (x right, y down, z forward).
        """
        u, v, z = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(v, np.float64),
                                      np.asarray(depth_m, np.float64))
        if not self.distorted:
            x = (u - self.cx) * z / self.fx
            y = (v - self.cy) * z / self.fy
            return np.stack([x, y, z], axis=-1)
        normalised = self.undistort(u, v)
        return np.stack([normalised[..., 0] * z, normalised[..., 1] * z, z], axis=-1)

    def project(self, points):
        """Project camera-frame points (..., 3), metres, to pixel coordinates (..., 2).

        With distortion the pixels are those of the raw image (OpenCV's ``projectPoints`` or
        ``fisheye.projectPoints``), so ``project(back_project(u, v, z)) == (u, v)``; points
        with z <= 0 then give NaN.
        """
        points = np.asarray(points, dtype=np.float64)
        z = points[..., 2]
        if not self.distorted:
            return np.stack([points[..., 0] * self.fx / z + self.cx,
                             points[..., 1] * self.fy / z + self.cy], axis=-1)
        self._validate_distortion()
        out = np.full(points.shape[:-1] + (2,), np.nan)
        front = np.all(np.isfinite(points), axis=-1) & (z > 0)
        if not front.any():
            return out
        out[front] = self._distort(points[front])
        return out

    def _distort(self, points):
        """Raw-image pixels (N, 2) of camera-frame points (N, 3) in front of the camera."""
        k, d, zero = self.camera_matrix, np.array(self.distortion), np.zeros(3)
        points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 1, 3)
        if self.distortion_model == EQUIDISTANT:
            pixels, _ = cv2.fisheye.projectPoints(points, zero, zero, k, d)
        else:
            pixels, _ = cv2.projectPoints(points, zero, zero, k, d)
        return pixels.reshape(-1, 2)


def _flat(values, size, name):
    """A matrix as a flat float64 array of ``size`` elements, else GeometryError."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != size:
        raise GeometryError(f'{name} must have {size} elements, got {values.size}')
    return values


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
