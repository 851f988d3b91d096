"""Depth images: reading files, encoding and decoding raw image buffers, invalid masks,
inpainting and normalisation."""

import os

import cv2
import numpy as np

#: Encodings accepted by :func:`decode_depth`: name -> (numpy dtype, holds millimetres-like units)
DEPTH_ENCODINGS = {
    '16UC1': np.dtype(np.uint16),
    'mono16': np.dtype(np.uint16),
    '32FC1': np.dtype(np.float32),
}


#: The value of a 16-bit depth pixel without depth (REP 118: 0 means "no measurement").
INVALID_DEPTH_UNITS = 0


class DepthError(ValueError):
    """Raised when a depth image cannot be decoded or holds no usable depth."""


def _encoding_dtype(encoding):
    """The pixel dtype of a depth encoding; :raises DepthError: for an unknown one."""
    if encoding not in DEPTH_ENCODINGS:
        raise DepthError(
            f"unsupported depth encoding '{encoding}' (expected one of "
            f"{', '.join(DEPTH_ENCODINGS)})")
    return DEPTH_ENCODINGS[encoding]


#: File name endings :func:`read_depth_image` reads.
DEPTH_FILE_TYPES = ('.tiff', '.tif', '.png', '.pgm', '.npy')


def read_depth_image(path, depth_scale=0.001):
    """Read a depth image file as float32 metres.

    - 16-bit PNG / TIFF / PGM (and integer ``.npy``): integer units that ``depth_scale`` turns
      into metres (0.001 for the usual millimetres of RealSense, TUM or GraspNet files);
    - float TIFF (a Cornell ``d.tiff``) and float ``.npy``: metres as they are.

    0 and NaN stay invalid (see :func:`invalid_mask`).

    :param path: the file.
    :param depth_scale: metres per unit of integer images.
    :returns: float32 (H, W) depth in metres.
    :raises DepthError: naming the file and what was expected, for any other file type, an
        unreadable file, more than one channel or 8-bit pixels.
    """
    path = str(path)
    kind = os.path.splitext(path)[1].lower()
    expected = ('expected a single-channel depth image: 16-bit PNG/TIFF/PGM in units of '
                'depth_scale, float TIFF in metres, or .npy')
    if kind not in DEPTH_FILE_TYPES:
        raise DepthError(f'cannot read depth image {path}: unknown file type '
                         f"'{kind or '(none)'}'; {expected}")
    if kind == '.npy':
        try:
            image = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DepthError(f'cannot read depth image {path}: {exc}') from exc
    else:
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DepthError(f'cannot read depth image {path}: missing or not a valid '
                             f'{kind[1:].upper()} file')
    if image.ndim != 2:
        raise DepthError(f'cannot read depth image {path}: shape {image.shape}; {expected}')
    if image.dtype.kind == 'f':
        return image.astype(np.float32)
    if image.dtype.kind in 'ui' and image.dtype.itemsize >= 2:
        return image.astype(np.float32) * np.float32(depth_scale)
    raise DepthError(f'cannot read depth image {path}: {image.dtype} pixels; {expected}')


def encode_depth(depth_m, encoding='16UC1', depth_scale=0.001):
    """The pixels of a depth image in one of :data:`DEPTH_ENCODINGS`; :func:`decode_depth`
    reads them back.

    ``32FC1`` keeps float32 metres as they are (NaN and +-inf included). The 16-bit encodings
    hold ``round(depth_m / depth_scale)`` units; a depth with no such value (NaN, +-inf,
    0 or less, or more than 65535 units) becomes :data:`INVALID_DEPTH_UNITS`, never a clipped
    depth.

    :param depth_m: (H, W) depth in metres.
    :param encoding: one of :data:`DEPTH_ENCODINGS`.
    :param depth_scale: metres per unit for 16-bit encodings.
    :returns: C-contiguous little-endian array (H, W): ``<u2`` or ``<f4``.
    :raises DepthError: for an unknown encoding or an array that is not 2-D.
    """
    dtype = _encoding_dtype(encoding)
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise DepthError(f'a depth image needs a 2-D array, got shape {depth_m.shape}')
    dtype = dtype.newbyteorder('<')
    if dtype.kind == 'f':
        return np.ascontiguousarray(depth_m, dtype=dtype)
    with np.errstate(invalid='ignore', over='ignore'):
        units = np.round(depth_m.astype(np.float64) / float(depth_scale))
        valid = np.isfinite(units) & (units > 0) & (units <= np.iinfo(np.uint16).max)
    return np.ascontiguousarray(np.where(valid, units, INVALID_DEPTH_UNITS), dtype=dtype)


def decode_depth(data, height, width, encoding, step, is_bigendian=False, depth_scale=0.001):
    """Decode a raw depth image buffer (the fields of sensor_msgs/Image) to metres.

    16-bit encodings hold integer units that ``depth_scale`` turns into metres (0.001 for the
    usual millimetres); ``32FC1`` holds metres. Row padding (``step`` larger than
    ``width * bytes_per_pixel``) and big-endian data are honoured.

    :param data: the image bytes (bytes, bytearray, memoryview or a uint8 array).
    :param height: rows.
    :param width: columns.
    :param encoding: one of :data:`DEPTH_ENCODINGS`.
    :param step: bytes per row, including padding.
    :param is_bigendian: byte order of the pixels.
    :param depth_scale: metres per unit for 16-bit encodings.
    :returns: float32 array (height, width) of depth in metres; invalid pixels keep their raw
        value (0 or NaN), see :func:`invalid_mask`.
    :raises DepthError: for an unknown encoding or a buffer that does not match the geometry.
    """
    dtype = _encoding_dtype(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise DepthError(f'empty depth image ({width}x{height})')
    dtype = dtype.newbyteorder('>' if is_bigendian else '<')
    row_bytes = width * dtype.itemsize
    if step < row_bytes:
        raise DepthError(f'step {step} is smaller than width*{dtype.itemsize} = {row_bytes}')
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < step * (height - 1) + row_bytes or buffer.size > step * height:
        raise DepthError(
            f'data holds {buffer.size} bytes; {width}x{height} {encoding} with step {step} '
            f'needs {step * height}')
    if buffer.size < step * height:
        buffer = np.concatenate([buffer, np.zeros(step * height - buffer.size, np.uint8)])
    rows = buffer.reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
    depth_m = pixels.astype(np.float32)
    if dtype.kind == 'u':
        depth_m *= np.float32(depth_scale)
    return depth_m


def invalid_mask(depth_m, min_depth_m=0.0, max_depth_m=np.inf):
    """Return a bool mask of pixels without usable depth (non-finite, <= 0 or out of range).

    :param depth_m: depth image in metres.
    :param min_depth_m: nearest usable depth, metres.
    :param max_depth_m: farthest usable depth, metres.
    """
    depth_m = np.asarray(depth_m)
    with np.errstate(invalid='ignore', over='ignore'):
        # the bounds as the comparisons see them: a float32 image compares in float32, where a
        # tiny min_depth is 0 and a huge max_depth is inf
        low, high = ((depth_m.dtype.type(min_depth_m), depth_m.dtype.type(max_depth_m))
                     if depth_m.dtype.kind == 'f' else (min_depth_m, max_depth_m))
        if low > 0 and np.isfinite(high):
            # the range alone decides: NaN fails both comparisons, infinities one of them, and
            # 0 the first (half the passes over the image)
            valid = (depth_m >= low) & (depth_m <= high)
        else:
            valid = np.isfinite(depth_m) & (depth_m > 0) & (depth_m >= min_depth_m) & (
                depth_m <= max_depth_m)
    return np.logical_not(valid, out=valid) if isinstance(valid, np.ndarray) else ~valid


def median(values):
    """``np.median`` of finite float values, the same value in the same dtype, by one
    partition.

    numpy's general path costs more than the partition itself on the few dozen to few hundred
    depths of a grasp's neighbourhood or a jaw's footprint.
    """
    values = np.asarray(values).ravel()
    n = values.size
    if n == 0:
        raise ValueError('median of no values')
    k = n // 2
    if n % 2:
        return np.partition(values, k)[k]
    part = np.partition(values, (k - 1, k))
    return (part[k - 1] + part[k]) / values.dtype.type(2)


def percentile(values, q):
    """``np.percentile(values, q)`` of finite values (linear interpolation), the same value in
    the same dtype (float32 stays float32), by one partition; see :func:`median` for why.

    :param q: percent, 0 to 100.
    """
    values = np.asarray(values).ravel()
    if not np.issubdtype(values.dtype, np.inexact):
        values = values.astype(np.float64)
    n = values.size
    if n == 0:
        raise ValueError('percentile of no values')
    index = (n - 1) * (float(q) / 100.0)  # numpy's virtual index of the linear method
    lo = int(np.floor(index))
    hi = min(lo + 1, n - 1)
    part = np.partition(values, (lo, hi) if hi != lo else lo)
    a, b, t = part[lo], part[hi], index - lo
    # numpy's lerp, in the values' dtype: from the nearer end, so that t = 0 and t = 1 give
    # a and b exactly
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def inpaint(depth_m, mask, radius_px=1):
    """Fill the masked pixels of a depth image (OpenCV Navier-Stokes, as GG-CNN does).

    The image is padded by one pixel so borders inpaint too, and scaled to [-1, 1] for
    OpenCV's float path; the result is returned in metres.

    :param depth_m: float depth image in metres.
    :param mask: bool array, True where the depth is to be filled.
    :param radius_px: inpainting neighbourhood radius in pixels.
    :returns: float32 depth image in metres without invalid pixels.
    :raises DepthError: when no pixel is valid.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if not mask.any():
        return depth_m.copy()
    if mask.all():
        raise DepthError('no valid depth pixel in the image')
    filled = np.where(mask, np.float32(0.0), depth_m)
    scale = float(max(filled.max(), -filled.min()))
    np.divide(filled, np.float32(scale), out=filled)
    padded = cv2.copyMakeBorder(filled, 1, 1, 1, 1, cv2.BORDER_DEFAULT)
    mask_bytes = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    padded_mask = cv2.copyMakeBorder(mask_bytes, 1, 1, 1, 1, cv2.BORDER_DEFAULT)
    result = cv2.inpaint(padded, padded_mask, radius_px, cv2.INPAINT_NS)
    return np.multiply(result[1:-1, 1:-1], np.float32(scale))


def normalise(depth_m, clip_m=1.0):
    """The network's input normalisation: subtract the mean depth and clip to +-clip_m.

    :param depth_m: inpainted depth image in metres.
    :param clip_m: clip range in metres.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    centred = depth_m - depth_m.mean()  # float32, a new array
    return np.clip(centred, -clip_m, clip_m, out=centred)
