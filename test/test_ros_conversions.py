"""Message <-> numpy conversions: round trips without a running ROS graph."""

import array

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from grasp_fcn_ros.core.depth import DepthError
from grasp_fcn_ros.core.geometry import CameraIntrinsics, GeometryError
from grasp_fcn_ros.core.projection import Grasp3D, quaternion_to_matrix
from grasp_fcn_ros.ros_conversions import (
    camera_info_from_intrinsics,
    cloud_to_array,
    depth_from_image,
    GRASP_FIELDS,
    grasp_to_pose_stamped,
    grasps_to_cloud,
    grasps_to_markers,
    grasps_to_pose_array,
    gripper_segments,
    image_from_depth,
    image_from_float,
    image_from_rgb,
    ImageError,
    intrinsics_from_camera_info,
    latency_from_message,
    latency_message,
    quality_color,
    rgb_from_image,
)

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id='camera_depth_optical_frame')


def raw_image(values, encoding, pad_bytes=0, big_endian=False):
    """An Image built byte by byte, independently of the module under test."""
    values = np.asarray(values)
    if big_endian:
        values = values.astype(values.dtype.newbyteorder('>'))
    height, width = values.shape[:2]
    rows = np.ascontiguousarray(values).view(np.uint8).reshape(height, -1)
    if pad_bytes:
        rows = np.concatenate([rows, np.full((height, pad_bytes), 0xEE, np.uint8)], axis=1)
    return Image(header=HEADER, height=height, width=width, encoding=encoding,
                 is_bigendian=int(big_endian), step=rows.shape[1],
                 data=array.array('B', rows.tobytes()))


def make_grasps(n=3):
    rng = np.random.default_rng(0)
    grasps = []
    for i in range(n):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        grasps.append(Grasp3D(position_m=rng.uniform(-0.5, 0.5, 3) + [0, 0, 1.0],
                              quaternion=q, width_m=0.02 + 0.01 * i, quality=0.9 - 0.2 * i,
                              angle=0.3 * i - 0.5, u=100.0 + i, v=200.5 - i, depth_m=1.0))
    return grasps


# --- depth and camera_info --------------------------------------------------------------------

@pytest.mark.parametrize('pad_bytes', [0, 6])
@pytest.mark.parametrize('big_endian', [False, True])
def test_depth_16uc1_padding_and_byte_order(pad_bytes, big_endian):
    mm = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100 + 300
    depth = depth_from_image(raw_image(mm, '16UC1', pad_bytes, big_endian), 0.001)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, mm / 1000.0, rtol=1e-6)


def test_depth_mono16_and_scale():
    units = np.full((2, 3), 250, np.uint16)
    np.testing.assert_allclose(depth_from_image(raw_image(units, 'mono16'), 0.004), 1.0)


@pytest.mark.parametrize('big_endian', [False, True])
def test_depth_32fc1(big_endian):
    metres = np.array([[0.5, np.nan], [0.0, 2.25]], np.float32)
    depth = depth_from_image(raw_image(metres, '32FC1', pad_bytes=4, big_endian=big_endian))
    np.testing.assert_array_equal(depth, metres)


def test_depth_rejects_colour_encoding_and_short_buffer():
    with pytest.raises(DepthError, match='rgb8'):
        depth_from_image(raw_image(np.zeros((2, 2, 3), np.uint8), 'rgb8'))
    msg = raw_image(np.zeros((4, 4), np.uint16), '16UC1')
    msg.data = msg.data[:10]
    with pytest.raises(DepthError):
        depth_from_image(msg)


def test_camera_info_to_intrinsics():
    msg = CameraInfo(width=640, height=480)
    msg.k = [600.0, 0.0, 320.5, 0.0, 610.0, 240.5, 0.0, 0.0, 1.0]
    intrinsics = intrinsics_from_camera_info(msg)
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (600, 610, 320.5,
                                                                            240.5)
    assert (intrinsics.width, intrinsics.height) == (640, 480)
    with pytest.raises(GeometryError):
        intrinsics_from_camera_info(CameraInfo(width=640, height=480))


def distorted_camera_info():
    msg = CameraInfo(width=640, height=480, distortion_model='plumb_bob')
    msg.k = [600.0, 0.0, 320.5, 0.0, 610.0, 240.5, 0.0, 0.0, 1.0]
    msg.d = [-0.2, 0.05, 0.001, -0.002, 0.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [580.0, 0.0, 310.0, 0.0, 0.0, 590.0, 250.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def test_camera_info_of_a_rectified_image_uses_p():
    cam = intrinsics_from_camera_info(distorted_camera_info(), rectified=True)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (580.0, 590.0, 310.0, 250.0)
    assert not cam.distorted and (cam.width, cam.height) == (640, 480)
    assert intrinsics_from_camera_info(distorted_camera_info()) == cam  # rectified by default


def test_camera_info_of_a_raw_image_uses_k_and_d():
    cam = intrinsics_from_camera_info(distorted_camera_info(), rectified=False)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (600.0, 610.0, 320.5, 240.5)
    assert cam.distortion_model == 'plumb_bob' and cam.distorted
    assert cam.distortion == (-0.2, 0.05, 0.001, -0.002, 0.0)
    msg = distorted_camera_info()
    msg.distortion_model = 'unknown_model'
    with pytest.raises(GeometryError, match="unknown distortion model 'unknown_model'"):
        intrinsics_from_camera_info(msg, rectified=False)


# --- images out and colour in -----------------------------------------------------------------

def test_camera_info_of_intrinsics_lays_out_k_p_r():
    info = camera_info_from_intrinsics(CameraIntrinsics(585.0, 586.0, 321.5, 239.5, 640, 480),
                                       HEADER)
    assert isinstance(info, CameraInfo)
    assert (info.width, info.height, info.distortion_model) == (640, 480, 'plumb_bob')
    assert list(info.k) == [585.0, 0.0, 321.5, 0.0, 586.0, 239.5, 0.0, 0.0, 1.0]
    assert list(info.p) == [585.0, 0.0, 321.5, 0.0, 0.0, 586.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert list(info.r) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert list(info.d) == [0.0] * 5
    assert info.header == HEADER and info.header is not HEADER


def test_depth_image_bytes_for_each_encoding():
    depth = np.array([[0.65, np.nan], [1.0, 0.0]])
    msg = image_from_depth(depth, HEADER, '16UC1')
    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == (
        '16UC1', 2, 2, 4, 0)
    assert bytes(msg.data) == bytes([0x8A, 0x02, 0, 0, 0xE8, 0x03, 0, 0])  # 650, 0, 1000, 0 mm
    assert msg.header == HEADER
    msg = image_from_depth(depth, HEADER, '32FC1')
    assert (msg.encoding, msg.step) == ('32FC1', 8)
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), '<f4').reshape(2, 2),
                                  depth.astype(np.float32))
    np.testing.assert_array_equal(depth_from_image(msg), depth.astype(np.float32))


def test_float_image_round_trip():
    values = np.random.default_rng(1).random((5, 7)).astype(np.float32)
    msg = image_from_float(values, HEADER)
    assert (msg.encoding, msg.width, msg.height, msg.step) == ('32FC1', 7, 5, 28)
    assert msg.header == HEADER
    np.testing.assert_array_equal(depth_from_image(msg), values)


def test_rgb_image_round_trip():
    rgb = np.random.default_rng(2).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    msg = image_from_rgb(rgb, HEADER)
    assert (msg.encoding, msg.step) == ('rgb8', 15)
    np.testing.assert_array_equal(rgb_from_image(msg), rgb)


def test_bgr8_with_padding_decodes_to_rgb():
    rgb = np.random.default_rng(3).integers(0, 255, (3, 4, 3), dtype=np.uint8)
    msg = raw_image(rgb[:, :, ::-1].copy(), 'bgr8', pad_bytes=5)
    np.testing.assert_array_equal(rgb_from_image(msg), rgb)


def test_colour_rejects_depth_encoding():
    with pytest.raises(ImageError, match='16UC1'):
        rgb_from_image(raw_image(np.zeros((2, 2), np.uint16), '16UC1'))


# --- grasps -----------------------------------------------------------------------------------

def test_pose_array_and_pose_stamped_keep_order_and_header():
    grasps = make_grasps()
    poses = grasps_to_pose_array(grasps, HEADER)
    assert poses.header == HEADER and len(poses.poses) == 3
    for pose, grasp in zip(poses.poses, grasps):
        np.testing.assert_allclose([pose.position.x, pose.position.y, pose.position.z],
                                   grasp.position_m)
        np.testing.assert_allclose([pose.orientation.x, pose.orientation.y,
                                    pose.orientation.z, pose.orientation.w], grasp.quaternion)
    best = grasp_to_pose_stamped(grasps[0], HEADER)
    assert best.header == HEADER and best.pose == poses.poses[0]


def test_grasp_cloud_round_trip():
    grasps = make_grasps()
    cloud = grasps_to_cloud(grasps, HEADER)
    assert [f.name for f in cloud.fields] == list(GRASP_FIELDS)
    assert all(f.datatype == PointField.FLOAT32 and f.count == 1 for f in cloud.fields)
    assert [f.offset for f in cloud.fields] == list(range(0, 48, 4))
    assert (cloud.point_step, cloud.row_step, cloud.width, cloud.height) == (48, 144, 3, 1)
    assert cloud.is_dense and not cloud.is_bigendian and cloud.header == HEADER
    points = cloud_to_array(cloud)
    assert points.dtype.names == GRASP_FIELDS
    for p, g in zip(points, grasps):
        np.testing.assert_allclose([p['x'], p['y'], p['z']], g.position_m, rtol=1e-6)
        np.testing.assert_allclose([p['qx'], p['qy'], p['qz'], p['qw']], g.quaternion,
                                   rtol=1e-6)
        np.testing.assert_allclose([p['width'], p['quality'], p['angle'], p['u'], p['v']],
                                   [g.width_m, g.quality, g.angle, g.u, g.v], rtol=1e-6)


def test_empty_grasp_cloud():
    cloud = grasps_to_cloud([], HEADER)
    assert cloud.width == 0 and len(cloud.data) == 0 and cloud.point_step == 48
    assert cloud_to_array(cloud).size == 0


def test_cloud_reader_honours_offsets_padding_and_byte_order():
    dtype = np.dtype({'names': ['x', 'i', 'rgb'], 'formats': ['>f8', '>u2', '>f4'],
                      'offsets': [0, 10, 16], 'itemsize': 24})
    points = np.zeros(4, dtype)
    points['x'] = [1.5, -2.0, 3.25, 0.0]
    points['i'] = [1, 2, 65535, 7]
    points['rgb'] = [0.5, 0.25, 0.125, 1.0]
    rows = points.view(np.uint8).reshape(2, 48)
    rows = np.concatenate([rows, np.zeros((2, 8), np.uint8)], axis=1)  # row padding
    cloud = PointCloud2(height=2, width=2, is_bigendian=True, point_step=24, row_step=56,
                        data=array.array('B', rows.tobytes()), fields=[
                            PointField(name='x', offset=0, datatype=PointField.FLOAT64, count=1),
                            PointField(name='i', offset=10, datatype=PointField.UINT16, count=1),
                            PointField(name='rgb', offset=16, datatype=PointField.FLOAT32,
                                       count=1)])
    read = cloud_to_array(cloud)
    np.testing.assert_array_equal(read['x'], points['x'])
    np.testing.assert_array_equal(read['i'], points['i'])
    np.testing.assert_array_equal(read['rgb'], points['rgb'])
    assert read.dtype['x'].isnative


# --- markers and latency ----------------------------------------------------------------------

def test_markers_delete_all_first_then_one_glyph_per_grasp():
    grasps = make_grasps()
    markers = grasps_to_markers(grasps, HEADER).markers
    assert markers[0].action == Marker.DELETEALL and markers[0].header == HEADER
    assert len(markers) == 4
    for i, (marker, grasp) in enumerate(zip(markers[1:], grasps)):
        assert (marker.ns, marker.id, marker.type, marker.action) == (
            'grasps', i, Marker.LINE_LIST, Marker.ADD)
        assert marker.header == HEADER and marker.scale.x > 0
        assert len(marker.points) % 2 == 0
        xs = sorted({round(p.x, 9) for p in marker.points})
        assert xs[0] == pytest.approx(-grasp.width_m / 2)
        assert xs[-1] == pytest.approx(grasp.width_m / 2)
        assert all(p.z <= 0 for p in marker.points)  # fingers point back towards the camera
        assert marker.color.a == 1.0
    assert markers[1].color.r < markers[3].color.r  # the better grasp is greener
    assert [m.action for m in grasps_to_markers([], HEADER).markers] == [Marker.DELETEALL]


def test_gripper_glyph_in_world_frame_spans_the_width_along_pose_x():
    grasp = make_grasps(1)[0]
    rotation = quaternion_to_matrix(grasp.quaternion)
    ends = gripper_segments(grasp.width_m)[0:2, 0] @ rotation.T + grasp.position_m
    np.testing.assert_allclose(np.linalg.norm(ends[1] - ends[0]), grasp.width_m)
    np.testing.assert_allclose(ends.mean(axis=0), grasp.position_m, atol=1e-12)
    np.testing.assert_allclose((ends[1] - ends[0]) / grasp.width_m, rotation[:, 0], atol=1e-12)


def test_quality_colour_goes_from_red_to_green():
    low, high = quality_color(0.0), quality_color(1.0)
    assert (low.r, low.g, high.r, high.g) == (1.0, 0.0, 0.0, 1.0)
    assert quality_color(2.0) == high and quality_color(-1.0) == low


def test_latency_message_round_trip():
    stages = {'decode': 1.0, 'inference': 80.5, 'total': 90.25}
    msg = latency_message(stages, HEADER)
    assert [f.name for f in msg.fields] == ['decode', 'inference', 'total']
    assert (msg.width, msg.height, msg.point_step) == (1, 1, 12)
    assert msg.header == HEADER
    assert latency_from_message(msg) == stages
