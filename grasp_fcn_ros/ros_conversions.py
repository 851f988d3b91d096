"""Conversions between ROS 2 messages and the numpy / core types of the detector.

Pure functions: message types are imported, but nothing here needs a node or an initialised
rclpy. No cv_bridge: depth decoding goes through :func:`grasp_fcn_ros.core.depth.decode_depth`,
which honours ``step`` and ``is_bigendian``.
"""

import array
import sys

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseArray, PoseStamped
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from .core.depth import decode_depth, encode_depth
from .core.geometry import CameraIntrinsics
from .core.gripper import axis_matrix

#: Fields of ``~/grasp_details``, one float32 each, in this order (metres, quaternion xyzw,
#: metres, [0, 1], radians in the image plane, source-image pixels).
GRASP_FIELDS = ('x', 'y', 'z', 'qx', 'qy', 'qz', 'qw', 'width', 'quality', 'angle', 'u', 'v')
#: Little-endian packed layout of one ``~/grasp_details`` point (12 float32 = 48 bytes).
GRASP_POINT_DTYPE = np.dtype({'names': list(GRASP_FIELDS), 'formats': ['<f4'] * len(GRASP_FIELDS)})

#: Marker namespace of the gripper glyphs.
MARKER_NAMESPACE = 'grasps'
#: Length of a drawn gripper finger, metres (along -Z from the grasp centre).
FINGER_LENGTH_M = 0.04
#: Line width of the gripper glyph, metres.
MARKER_LINE_WIDTH_M = 0.003

#: Stage labels of the ``~/latency`` message, in order.
LATENCY_STAGES = ('wait', 'decode', 'preprocess', 'inference', 'postprocess', 'projection',
                  'publish', 'total')

#: PointField datatype -> numpy type character.
_POINT_FIELD_TYPES = {
    PointField.INT8: 'i1', PointField.UINT8: 'u1', PointField.INT16: 'i2',
    PointField.UINT16: 'u2', PointField.INT32: 'i4', PointField.UINT32: 'u4',
    PointField.FLOAT32: 'f4', PointField.FLOAT64: 'f8',
}

#: Colour encodings :func:`rgb_from_image` accepts: name -> (channels, RGB channel order).
_COLOR_ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}

_HOST_BIG_ENDIAN = sys.byteorder == 'big'


class ImageError(ValueError):
    """Raised when a colour image message cannot be decoded."""


def make_header(stamp, frame_id):
    """A new Header with a copy of ``stamp`` and ``frame_id``."""
    return Header(stamp=Time(sec=stamp.sec, nanosec=stamp.nanosec), frame_id=frame_id)


def _bytes(values):
    """``array('B')`` of a numpy array's bytes, the fast path of the ``data`` setters."""
    return array.array('B', np.ascontiguousarray(values).tobytes())


# --- images -----------------------------------------------------------------------------------

def depth_from_image(msg, depth_scale=0.001):
    """Decode a depth Image (16UC1 / mono16 / 32FC1) to metres.

    :param msg: sensor_msgs/Image.
    :param depth_scale: metres per unit for 16-bit encodings.
    :returns: float32 (H, W) depth in metres; invalid pixels keep 0 or NaN.
    :raises grasp_fcn_ros.core.depth.DepthError: for an unsupported encoding or a size mismatch.
    """
    return decode_depth(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                        bool(msg.is_bigendian), depth_scale)


def image_from_depth(depth_m, header, encoding='32FC1', depth_scale=0.001):
    """A depth Image of an (H, W) array in metres (little-endian, no row padding).

    The pixels follow :func:`~grasp_fcn_ros.core.depth.encode_depth`: for 16-bit encodings,
    units of ``depth_scale`` metres, 0 where there is no valid depth.

    :param depth_m: (H, W) depth in metres.
    :param header: std_msgs/Header to copy.
    :param encoding: ``32FC1``, ``16UC1`` or ``mono16``.
    :param depth_scale: metres per unit for 16-bit encodings.
    :raises grasp_fcn_ros.core.depth.DepthError: for an unknown encoding or a non 2-D array.
    """
    pixels = encode_depth(depth_m, encoding, depth_scale)
    height, width = pixels.shape
    return Image(header=make_header(header.stamp, header.frame_id), height=height, width=width,
                 encoding=encoding, is_bigendian=0, step=pixels.itemsize * width,
                 data=_bytes(pixels))


def camera_info_from_intrinsics(intrinsics, header):
    """A distortion-free CameraInfo (K, P, R, image size) of pinhole intrinsics.

    :param intrinsics: :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`, pixels.
    :param header: std_msgs/Header to copy.
    """
    fx, fy, cx, cy = (float(v) for v in (intrinsics.fx, intrinsics.fy, intrinsics.cx,
                                         intrinsics.cy))
    return CameraInfo(header=make_header(header.stamp, header.frame_id),
                      width=int(intrinsics.width), height=int(intrinsics.height),
                      distortion_model='plumb_bob', d=[0.0] * 5,
                      k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def intrinsics_from_camera_info(msg, rectified=True):
    """Camera model of a depth image from its CameraInfo (K, D, distortion_model, P, size).

    A rectified image maps through P (through K when P is all zero, as an uncalibrated
    CameraInfo has); a raw one through K after undistorting the pixels with D. See
    :meth:`~grasp_fcn_ros.core.geometry.CameraIntrinsics.from_calibration`.

    :param msg: sensor_msgs/CameraInfo.
    :param rectified: whether the depth image is rectified (aligned_depth_to_color, image_rect).
    :raises grasp_fcn_ros.core.geometry.GeometryError: when the matrix used is zero or not
        finite, or D is non-zero with an unknown distortion model.
    """
    return CameraIntrinsics.from_calibration(msg.k, msg.d, msg.distortion_model, msg.p,
                                             msg.width, msg.height, rectified=rectified)


def image_from_float(values, header):
    """A 32FC1 Image of a float (H, W) array.

    :param values: 2-D array, converted to float32.
    :param header: std_msgs/Header to copy.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ImageError(f'a 32FC1 image needs a 2-D array, got shape {values.shape}')
    height, width = values.shape
    return Image(header=make_header(header.stamp, header.frame_id), height=height, width=width,
                 encoding='32FC1', is_bigendian=int(_HOST_BIG_ENDIAN), step=4 * width,
                 data=_bytes(values))


def image_from_rgb(rgb, header):
    """An rgb8 Image of a uint8 (H, W, 3) array.

    :param rgb: RGB image, converted to uint8.
    :param header: std_msgs/Header to copy.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f'an rgb8 image needs an (H, W, 3) array, got shape {rgb.shape}')
    height, width = rgb.shape[:2]
    return Image(header=make_header(header.stamp, header.frame_id), height=height, width=width,
                 encoding='rgb8', is_bigendian=0, step=3 * width, data=_bytes(rgb))


def rgb_from_image(msg):
    """Decode a colour Image (rgb8, bgr8, rgba8, bgra8 or mono8; ``step`` honoured) to RGB.

    :param msg: sensor_msgs/Image.
    :returns: uint8 (H, W, 3) RGB array.
    :raises ImageError: for another encoding or a buffer that does not match the size.
    """
    if msg.encoding not in _COLOR_ENCODINGS:
        raise ImageError(f"unsupported colour encoding '{msg.encoding}' (expected one of "
                         f"{', '.join(_COLOR_ENCODINGS)})")
    channels, order = _COLOR_ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if height <= 0 or width <= 0 or step < row_bytes or buffer.size < step * (height - 1) + (
            row_bytes) or buffer.size > step * height:
        raise ImageError(f'{msg.encoding} image {width}x{height} with step {step} does not '
                         f'match its {buffer.size} data bytes')
    if buffer.size < step * height:
        buffer = np.concatenate([buffer, np.zeros(step * height - buffer.size, np.uint8)])
    pixels = buffer.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


# --- grasps -----------------------------------------------------------------------------------

def pose_from_grasp(grasp):
    """geometry_msgs/Pose of a :class:`~grasp_fcn_ros.core.projection.Grasp3D`."""
    x, y, z = (float(c) for c in grasp.position_m)
    qx, qy, qz, qw = (float(c) for c in grasp.quaternion)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = x, y, z
    pose.orientation.x, pose.orientation.y = qx, qy
    pose.orientation.z, pose.orientation.w = qz, qw
    return pose


def grasps_to_pose_array(grasps, header):
    """PoseArray of the grasps, in the given order (best first).

    :param grasps: list of :class:`~grasp_fcn_ros.core.projection.Grasp3D`.
    :param header: std_msgs/Header to copy (stamp and frame of the poses).
    """
    return PoseArray(header=make_header(header.stamp, header.frame_id),
                     poses=[pose_from_grasp(g) for g in grasps])


def grasp_to_pose_stamped(grasp, header):
    """PoseStamped of one grasp."""
    return PoseStamped(header=make_header(header.stamp, header.frame_id),
                       pose=pose_from_grasp(grasp))


def grasps_to_array(grasps):
    """Structured array (dtype :data:`GRASP_POINT_DTYPE`) with one row per grasp."""
    points = np.zeros(len(grasps), dtype=GRASP_POINT_DTYPE)
    for i, g in enumerate(grasps):
        points[i] = (*np.asarray(g.position_m, dtype=np.float64),
                     *np.asarray(g.quaternion, dtype=np.float64),
                     g.width_m, g.quality, g.angle, g.u, g.v)
    return points


def grasps_to_cloud(grasps, header):
    """PointCloud2 with one point per grasp (fields :data:`GRASP_FIELDS`, float32).

    :param grasps: list of :class:`~grasp_fcn_ros.core.projection.Grasp3D`, best first.
    :param header: std_msgs/Header to copy.
    """
    points = grasps_to_array(grasps)
    step = GRASP_POINT_DTYPE.itemsize
    fields = [PointField(name=name, offset=GRASP_POINT_DTYPE.fields[name][1],
                         datatype=PointField.FLOAT32, count=1) for name in GRASP_FIELDS]
    return PointCloud2(header=make_header(header.stamp, header.frame_id), height=1,
                       width=len(points), fields=fields, is_bigendian=False, point_step=step,
                       row_step=step * len(points), data=_bytes(points), is_dense=True)


def cloud_to_array(msg):
    """Read a PointCloud2 into a structured array with one named field per PointField.

    Honours field offsets, ``point_step``, ``row_step`` padding and ``is_bigendian``; fields
    with ``count`` > 1 become sub-arrays. The result is in native byte order.

    :param msg: sensor_msgs/PointCloud2.
    :returns: structured array of ``height * width`` points.
    :raises ValueError: for an unknown datatype or a buffer shorter than the cloud.
    """
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.datatype not in _POINT_FIELD_TYPES:
            raise ValueError(f"field '{f.name}' has unknown datatype {f.datatype}")
        code = ('>' if msg.is_bigendian else '<') + _POINT_FIELD_TYPES[f.datatype]
        names.append(f.name)
        formats.append(code if f.count <= 1 else (code, (f.count,)))
        offsets.append(f.offset)
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': msg.point_step})
    count = msg.height * msg.width
    if count == 0:
        return np.zeros(0, dtype=dtype.newbyteorder('='))
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    needed = msg.row_step * (msg.height - 1) + msg.point_step * msg.width
    if buffer.size < needed:
        raise ValueError(f'cloud data holds {buffer.size} bytes, needs {needed}')
    rows = [buffer[r * msg.row_step:r * msg.row_step + msg.point_step * msg.width]
            for r in range(msg.height)]
    points = np.concatenate(rows).view(dtype) if msg.height > 1 else rows[0].view(dtype)
    native = np.dtype([(name, dtype.fields[name][0].newbyteorder('=')) for name in names])
    out = np.empty(count, dtype=native)
    for name in names:
        out[name] = points[name]
    return out


# --- markers ----------------------------------------------------------------------------------

def quality_color(quality):
    """Colour of a grasp glyph: red for quality 0 through yellow to green for 1."""
    q = float(np.clip(quality, 0.0, 1.0))
    return ColorRGBA(r=float(min(1.0, 2.0 * (1.0 - q))), g=float(min(1.0, 2.0 * q)), b=0.0,
                     a=1.0)


def gripper_segments(width_m, finger_length_m=FINGER_LENGTH_M):
    """Line segments (pairs of points, grasp frame) of a parallel-jaw gripper glyph.

    The two fingers stand at +-width/2 along X with their tips at the grasp centre and run
    back along -Z (towards the camera) by ``finger_length_m``; a base bar joins their backs
    and a short stem continues from its middle.

    :returns: float array (K, 2, 3) of segment end points, metres.
    """
    h = float(width_m) / 2.0
    back = -float(finger_length_m)
    return np.array([
        [[-h, 0.0, 0.0], [-h, 0.0, back]],
        [[h, 0.0, 0.0], [h, 0.0, back]],
        [[-h, 0.0, back], [h, 0.0, back]],
        [[0.0, 0.0, back], [0.0, 0.0, 1.5 * back]],
    ])


def delete_all_marker(header, namespace=MARKER_NAMESPACE):
    """A DELETEALL marker: clears the glyphs of the previous frame."""
    return Marker(header=make_header(header.stamp, header.frame_id), ns=namespace, id=0,
                  action=Marker.DELETEALL)


def grasps_to_markers(grasps, header, finger_length_m=FINGER_LENGTH_M,
                      line_width_m=MARKER_LINE_WIDTH_M, namespace=MARKER_NAMESPACE,
                      closing_axis='x', approach_axis='z'):
    """MarkerArray: a DELETEALL first, then one gripper glyph (LINE_LIST) per grasp.

    Each glyph is drawn at the grasp's real width and coloured by its quality; marker ids
    follow the grasp order (0 = best).

    :param grasps: list of :class:`~grasp_fcn_ros.core.projection.Grasp3D`.
    :param header: std_msgs/Header to copy.
    :param closing_axis: axis of the pose along which the jaws close (see
        :data:`grasp_fcn_ros.core.gripper.AXES`).
    :param approach_axis: axis of the pose pointing towards the object.
    """
    to_tool = axis_matrix(closing_axis, approach_axis)
    markers = [delete_all_marker(header, namespace)]
    for i, grasp in enumerate(grasps):
        marker = Marker(header=make_header(header.stamp, header.frame_id), ns=namespace, id=i,
                        type=Marker.LINE_LIST, action=Marker.ADD, pose=pose_from_grasp(grasp),
                        color=quality_color(grasp.quality))
        marker.scale.x = float(line_width_m)
        marker.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
                         for p in gripper_segments(grasp.width_m, finger_length_m).reshape(-1, 3)
                         @ to_tool.T]
        markers.append(marker)
    return MarkerArray(markers=markers)


# --- latency ----------------------------------------------------------------------------------

def latency_message(stages_ms, header=None):
    """PointCloud2 with a single point whose float32 fields are the per-stage milliseconds.

    A cloud, not an array, so that the timings carry the header (stamp and frame) of the depth
    frame they belong to; ``ros2 topic echo --field fields`` lists the stage names.

    :param stages_ms: mapping stage name -> milliseconds, in publication order.
    :param header: std_msgs/Header to copy (the depth frame's); None = an empty header.
    """
    labels = list(stages_ms)
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate(labels)]
    values = np.array([float(stages_ms[name]) for name in labels], dtype='<f4')
    header = header or Header()
    return PointCloud2(header=make_header(header.stamp, header.frame_id), height=1, width=1,
                       fields=fields, is_bigendian=False, point_step=4 * len(labels),
                       row_step=4 * len(labels), data=_bytes(values), is_dense=True)


def latency_from_message(msg):
    """Inverse of :func:`latency_message`: a dict stage name -> milliseconds."""
    points = cloud_to_array(msg)
    if points.size == 0:
        return {}
    return {name: float(points[name][0]) for name in points.dtype.names}
