"""The grasp_detector node in its own process, driven over ROS 2 topics and services.

One node process serves most tests (random weights, q_threshold 0 so every frame has grasps); a
second one, in its own namespace, starts with a missing model file. Both start at once to share
the start-up time. Frames take seconds here (a 2-core CPU shared with other work), so waits are
generous; every wait ends as soon as its condition holds.
"""

import array
import importlib.util
import math
import os

import numpy as np
import pytest
from sensor_msgs.msg import Image, PointField
from visualization_msgs.msg import Marker
import yaml

from grasp_fcn_ros.node import DEFAULTS, PARAMETERS
from grasp_fcn_ros.ros_conversions import cloud_to_array, GRASP_FIELDS, latency_from_message

from ros_harness import (
    camera_info_msg,
    client_fixture,
    depth_image_msg,
    DetectorTopics,
    NodeProcess,
    StampCounter,
    unique_domain_id,
    wait_for_log,
)
from scenes import box_on_plane, INTRINSICS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'config', 'detector.yaml')

DOMAIN_ID = unique_domain_id(__name__)
FRAME = 'camera_depth_optical_frame'
BROKEN_NS = '/broken'
#: Start-up (torch + rclpy import, model load) and one frame, on a loaded 2-core machine.
STARTUP_S = 120.0
WAIT_S = 60.0

STAMPS = StampCounter()


def info_for(stamp, width=INTRINSICS.width, height=INTRINSICS.height, k=None):
    fx, fy, cx, cy = k or (INTRINSICS.fx, INTRINSICS.fy, INTRINSICS.cx, INTRINSICS.cy)
    return camera_info_msg(fx, fy, cx, cy, width, height, stamp, FRAME)


def good_frame(encoding='16UC1', **options):
    """A box_on_plane frame and its camera_info, with a fresh stamp."""
    stamp = STAMPS.next()
    dtype = np.uint16 if encoding != '32FC1' else np.float32
    depth = box_on_plane(dtype=dtype)
    return depth_image_msg(depth, encoding, stamp, FRAME, **options), info_for(stamp)


# --- fixtures ---------------------------------------------------------------------------------

client = client_fixture(DOMAIN_ID, 'grasp_fcn_test_client')


@pytest.fixture(scope='module')
def processes(tmp_path_factory, random_model_path):
    folder = tmp_path_factory.mktemp('grasp_detector')
    missing = str(folder / 'no_such_model.pt')
    main = NodeProcess(folder / 'detector.log', DOMAIN_ID, {
        'model_path': random_model_path, 'device': 'cpu', 'q_threshold': 0.0,
        'latency_log_period': 1.0})
    broken = NodeProcess(folder / 'broken.log', DOMAIN_ID, {
        'model_path': missing, 'device': 'cpu', 'q_threshold': 0.0}, namespace=BROKEN_NS)
    yield {'main': main, 'broken': broken, 'missing': missing, 'folder': folder}
    for process in (main, broken):
        process.stop()


@pytest.fixture(scope='module')
def detector(client, processes):
    """The main node, up, after it was sent one depth frame before any camera_info."""
    process = processes['main']
    topics = DetectorTopics(client)
    assert client.wait_for(topics.ready, STARTUP_S), (
        f'node did not come up:\n{process.log()}')
    topics.process = process
    # Measured here because it needs a node that has never seen camera_info.
    start = process.log_offset()
    stamp = STAMPS.next()
    frame = depth_image_msg(box_on_plane(dtype=np.uint16), '16UC1', stamp, FRAME)
    warned = topics.send_until(
        frame, None, lambda: 'no camera_info received yet' in process.log(start), WAIT_S,
        resend_s=5.0)
    topics.before_camera_info = {'warned': warned, 'outputs': topics.outputs(stamp),
                                 'log': process.log(start)}
    return topics


def assert_served_after(topics, start, text):
    """The node logged ``text`` once after byte ``start``, then serves a good frame."""
    depth, info = good_frame()
    outputs = topics.serve(depth, info, WAIT_S)
    log = topics.process.log(start)
    assert log.count(text) == 1, log
    return outputs


# --- the contract on a good frame -------------------------------------------------------------

def test_frame_before_camera_info_warns(detector):
    early = detector.before_camera_info
    assert early['warned'], early['log']
    assert not any(early['outputs'].values())


def test_16uc1_frame_publishes_grasps_best_first(detector):
    depth_mm = box_on_plane(dtype=np.uint16)
    stamp = STAMPS.next()
    out = detector.serve(depth_image_msg(depth_mm, '16UC1', stamp, FRAME), info_for(stamp))

    grasps, cloud, markers = out['grasps'][0], out['grasp_details'][0], out['markers'][0]
    for msg in (grasps, cloud, *markers.markers):
        assert msg.header.frame_id == FRAME
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (stamp.sec, stamp.nanosec)
    n = len(grasps.poses)
    assert 1 <= n <= DEFAULTS['max_grasps']

    assert [f.name for f in cloud.fields] == list(GRASP_FIELDS)
    assert all(f.datatype == PointField.FLOAT32 and f.count == 1 for f in cloud.fields)
    assert cloud.point_step == 4 * len(GRASP_FIELDS) == 48
    assert cloud.width == n and cloud.height == 1 and cloud.is_dense
    points = cloud_to_array(cloud)
    assert np.all(np.diff(points['quality']) <= 1e-6), 'grasps are not best first'

    depth_m = depth_mm.astype(np.float64) / 1000.0
    radius = DEFAULTS['depth_radius']
    for pose, p in zip(grasps.poses, points):
        xyz = np.array([pose.position.x, pose.position.y, pose.position.z])
        q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z,
                      pose.orientation.w])
        np.testing.assert_allclose(xyz, [p['x'], p['y'], p['z']], atol=1e-6)
        np.testing.assert_allclose(q, [p['qx'], p['qy'], p['qz'], p['qw']], atol=1e-6)
        assert abs(np.linalg.norm(q) - 1.0) < 1e-5
        # the pose is the back-projection of (u, v) through K at the depth found there
        row, col = int(round(p['v'])), int(round(p['u']))
        window = depth_m[max(row - radius, 0):row + radius + 1,
                         max(col - radius, 0):col + radius + 1]
        assert np.min(np.abs(window - xyz[2])) < 1e-4, (xyz[2], np.unique(window))
        expected = [(p['u'] - INTRINSICS.cx) * xyz[2] / INTRINSICS.fx,
                    (p['v'] - INTRINSICS.cy) * xyz[2] / INTRINSICS.fy]
        np.testing.assert_allclose(xyz[:2], expected, atol=1e-5)
        assert 0.0 <= p['quality'] <= 1.0 and p['width'] >= 0.0

    best = out['best_grasp'][0]
    assert best.header.frame_id == FRAME
    assert best.pose == grasps.poses[0]

    assert markers.markers[0].action == Marker.DELETEALL
    glyphs = markers.markers[1:]
    assert len(glyphs) == n
    assert all(m.type == Marker.LINE_LIST and m.ns == 'grasps' and m.action == Marker.ADD
               for m in glyphs)
    assert [m.pose for m in glyphs] == list(grasps.poses)


def test_depth_rectified_picks_p_or_k_with_distortion(detector, client):
    # P differs from K; k1 = -0.3 distorts the raw image: x_d = x (1 + k1 r^2)
    fx, fy, cx, cy = INTRINSICS.fx, INTRINSICS.fy, INTRINSICS.cx, INTRINSICS.cy
    p_fx, p_fy, p_cx, p_cy = 600.0, 610.0, 330.0, 235.0

    def frame():
        depth, info = good_frame()
        info.d = [-0.3, 0.0, 0.0, 0.0, 0.0]
        info.p = [p_fx, 0.0, p_cx, 0.0, 0.0, p_fy, p_cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return depth, info

    points = cloud_to_array(detector.serve(*frame(), WAIT_S)['grasp_details'][0])
    assert points.size
    for p in points:  # rectified (the default): x = (u - cx') z / fx' with P's values
        np.testing.assert_allclose([p['x'], p['y']], [(p['u'] - p_cx) * p['z'] / p_fx,
                                                      (p['v'] - p_cy) * p['z'] / p_fy],
                                   atol=1e-5)
    (result,) = client.set_parameters(detector.node_name, {'depth_rectified': False})
    assert result.successful, result.reason
    try:
        points = cloud_to_array(detector.serve(*frame(), WAIT_S)['grasp_details'][0])
    finally:
        (result,) = client.set_parameters(detector.node_name, {'depth_rectified': True})
        assert result.successful, result.reason
    assert points.size
    for p in points:  # raw: the point re-distorted through K lands on its pixel
        x, y = p['x'] / p['z'], p['y'] / p['z']
        radial = 1 - 0.3 * (x * x + y * y)
        np.testing.assert_allclose([fx * x * radial + cx, fy * y * radial + cy],
                                   [p['u'], p['v']], atol=1e-4)


@pytest.mark.parametrize('encoding, pad_bytes, big_endian', [
    ('32FC1', 0, False), ('16UC1', 64, False), ('16UC1', 0, True)],
    ids=['32FC1', 'padded-step', 'big-endian'])
def test_depth_encodings(detector, encoding, pad_bytes, big_endian):
    depth, info = good_frame(encoding, pad_bytes=pad_bytes, big_endian=big_endian)
    out = detector.serve(depth, info, WAIT_S)
    z = cloud_to_array(out['grasp_details'][0])['z']
    assert z.size >= 1
    # decoded right: every grasp lies on the table (0.70 m) or the box top (0.65 m)
    assert np.all(np.min(np.abs(z[:, None] - np.array([0.65, 0.70])), axis=1) < 1e-4), z


# --- bad input: one warning, then the next good frame is served -------------------------------

def _bad_encoding():
    stamp = STAMPS.next()
    msg = Image(height=480, width=640, encoding='rgb8', step=640 * 3)
    msg.header.stamp, msg.header.frame_id = stamp, FRAME
    msg.data = array.array('B', bytes(640 * 480 * 3))
    return msg, info_for(stamp), "unsupported depth encoding 'rgb8'"


def _nan_only():
    stamp = STAMPS.next()
    depth = np.full((480, 640), np.nan, np.float32)
    return (depth_image_msg(depth, '32FC1', stamp, FRAME), info_for(stamp),
            'no valid depth inside the crop')


def _zero_only():
    stamp = STAMPS.next()
    depth = np.zeros((480, 640), np.uint16)
    return (depth_image_msg(depth, '16UC1', stamp, FRAME), info_for(stamp),
            'no valid depth inside the crop')


def _smaller_than_crop():
    stamp = STAMPS.next()
    depth = box_on_plane(320, 240, box=(140, 100, 40, 30), dtype=np.uint16)
    return (depth_image_msg(depth, '16UC1', stamp, FRAME), info_for(stamp, 320, 240),
            'smaller than the crop')


def _zero_k():
    stamp = STAMPS.next()
    return (depth_image_msg(box_on_plane(dtype=np.uint16), '16UC1', stamp, FRAME),
            info_for(stamp, k=(0.0, 0.0, 0.0, 0.0)), 'camera matrix is unusable')


def _size_mismatch():
    stamp = STAMPS.next()
    return (depth_image_msg(box_on_plane(dtype=np.uint16), '16UC1', stamp, FRAME),
            info_for(stamp, 320, 240), 'camera_info is for 320x240 but the depth image is 640x480')


@pytest.mark.parametrize('make_bad', [_bad_encoding, _nan_only, _zero_only, _smaller_than_crop,
                                      _zero_k, _size_mismatch],
                         ids=['encoding-rgb8', 'nan-only', 'zero-only', 'smaller-than-crop',
                              'zero-K', 'camera-info-size'])
def test_bad_input_warns_once_then_next_frame_served(detector, client, make_bad):
    process = detector.process
    start = process.log_offset()
    depth, info, text = make_bad()
    assert detector.send_until(depth, info, lambda: text in process.log(start), WAIT_S,
                               resend_s=5.0), process.log(start)
    assert '[WARN]' in process.log(start)
    # the same problem again is throttled (one warning), and nothing is published for it
    again_depth, again_info, _ = make_bad()
    detector.send(again_depth, again_info)
    assert_served_after(detector, start, text)
    assert not any(detector.outputs(depth.header.stamp).values())
    assert not any(detector.outputs(again_depth.header.stamp).values())


# --- parameters -------------------------------------------------------------------------------

@pytest.mark.parametrize('name, value, words', [
    ('q_threshold', 1.5, 'out of range'),
    ('max_grasps', 0, 'out of range'),
    ('min_depth', 6.0, 'smaller than max_depth'),
    ('device', 'tpu', "unknown device 'tpu'"),
    ('backend', 'tensorflow', "unknown backend 'tensorflow'"),
    ('precision', 'fp8', "unknown precision 'fp8'"),
    ('q_threshold', 'high', 'type'),
    ('image_reliability', 'reliable', 'read-only'),
    ('crop_size', -1, 'out of range'),
    ('depth_scale', 0.0, 'out of range'),
    ('min_distance', 0, 'out of range'),
    ('q_sigma', -1.0, 'out of range'),
    ('max_grasps', 2.5, 'type'),
    ('latency_log_period', -1.0, 'out of range'),
    ('device', 'cuda:x', "unknown device 'cuda:x'"),
])
def test_invalid_parameter_rejected_with_reason(detector, client, name, value, words):
    before = client.get_parameters(detector.node_name, [name])[name]
    (result,) = client.set_parameters(detector.node_name, {name: value})
    assert not result.successful
    assert words in result.reason, result.reason
    assert client.get_parameters(detector.node_name, [name])[name] == before


def test_output_frame_needs_tf2(detector, client):
    (result,) = client.set_parameters(detector.node_name, {'output_frame': 'base_link'})
    if importlib.util.find_spec('tf2_ros') is None:
        assert not result.successful and 'tf2_ros' in result.reason, result.reason
        assert client.get_parameters(detector.node_name, ['output_frame']) == {
            'output_frame': ''}
    else:  # a full ROS installation: accepted; restore the camera frame
        assert result.successful, result.reason
        (result,) = client.set_parameters(detector.node_name, {'output_frame': ''})
        assert result.successful, result.reason


def test_q_threshold_change_applies_on_next_frame(detector, client):
    (result,) = client.set_parameters(detector.node_name, {'q_threshold': 1.0})
    assert result.successful, result.reason
    try:
        empty, info = good_frame()
        out = detector.serve(empty, info, WAIT_S)
        assert out['grasps'][0].poses == []
        assert out['grasp_details'][0].width == 0 and len(out['grasp_details'][0].data) == 0
        markers = out['markers'][0].markers
        assert [m.action for m in markers] == [Marker.DELETEALL]
    finally:
        (result,) = client.set_parameters(detector.node_name, {'q_threshold': 0.0})
        assert result.successful, result.reason
    assert detector.flush(*good_frame(), WAIT_S)['grasps'][0].poses
    assert detector.outputs(empty.header.stamp)['best_grasp'] == []


def test_corrupt_model_rejected_and_old_model_kept(detector, client, processes):
    corrupt = processes['folder'] / 'corrupt.pt'
    corrupt.write_bytes(b'this is not a checkpoint' * 10)
    before = client.get_parameters(detector.node_name, ['model_path'])['model_path']
    (result,) = client.set_parameters(detector.node_name, {'model_path': str(corrupt)})
    assert not result.successful
    assert str(corrupt) in result.reason
    assert client.get_parameters(detector.node_name, ['model_path'])['model_path'] == before
    depth, info = good_frame()
    assert detector.serve(depth, info, WAIT_S)['grasps'][0].poses


# --- on-demand images, latency ----------------------------------------------------------------

def _bgr_image(width, height):
    """A uniform bgr8 colour image (B, G, R) = (30, 20, 10) in the depth camera's frame."""
    image = Image(height=height, width=width, encoding='bgr8', step=width * 3)
    image.header.frame_id = FRAME
    image.data = array.array('B', np.tile(np.array([30, 20, 10], np.uint8), width * height)
                             .tobytes())
    return image


def test_debug_images_published_to_subscribers(detector, client):
    quality = client.subscribe(Image, f'{detector.node_name}/quality_image')
    debug = client.subscribe(Image, f'{detector.node_name}/debug_image')
    try:
        assert client.wait_for(lambda: quality.subscription.get_publisher_count() > 0
                               and debug.subscription.get_publisher_count() > 0, WAIT_S)
        # the node subscribes to colour once ~/debug_image has a subscriber
        assert client.wait_for(lambda: detector.color_pub.get_subscription_count() > 0, WAIT_S)
        detector.color_pub.publish(_bgr_image(640, 480))
        depth, info = good_frame()
        stamp = depth.header.stamp
        assert detector.send_until(depth, info, lambda: quality.with_stamp(stamp)
                                   and debug.with_stamp(stamp), WAIT_S)
        q_msg, d_msg = quality.with_stamp(stamp)[0], debug.with_stamp(stamp)[0]
        assert (q_msg.encoding, q_msg.width, q_msg.height) == ('32FC1', 640, 480)
        q = np.frombuffer(bytes(q_msg.data), np.float32).reshape(480, 640)
        assert np.all((q >= 0) & (q <= 1))
        assert np.all(q[:, :100] == 0)  # outside the centred 400 px crop
        assert (d_msg.encoding, d_msg.width, d_msg.height, d_msg.step) == ('rgb8', 640, 480,
                                                                           1920)
        rgb = np.frombuffer(bytes(d_msg.data), np.uint8).reshape(480, 640, 3)
        assert tuple(rgb[470, 5]) == (10, 20, 30)  # the bgr8 colour image, as RGB

        # a colour image of another size (not registered to depth): the depth rendering
        start = detector.process.log_offset()
        detector.color_pub.publish(_bgr_image(320, 240))
        depth, info = good_frame()
        stamp = depth.header.stamp
        assert detector.send_until(depth, info, lambda: debug.with_stamp(stamp), WAIT_S)
        rgb = np.frombuffer(bytes(debug.with_stamp(stamp)[0].data), np.uint8).reshape(
            480, 640, 3)
        assert tuple(rgb[470, 5]) != (10, 20, 30)
        assert 'colour image not registered to the depth image (320x240' in (
            detector.process.log(start))
    finally:
        client.node.destroy_subscription(quality.subscription)
        client.node.destroy_subscription(debug.subscription)
    # nobody watches ~/debug_image any more: the node drops its colour subscription
    assert client.wait_for(lambda: detector.color_pub.get_subscription_count() == 0, WAIT_S)


def test_latency_topic_and_log_line(detector, client):
    assert len(detector.inbox['latency']) > 0
    msg = detector.inbox['latency'].messages[-1]
    assert [f.name for f in msg.fields] == ['wait', 'decode', 'preprocess', 'inference',
                                            'postprocess', 'projection', 'publish', 'total']
    assert msg.header.frame_id == FRAME
    stages = latency_from_message(msg)
    assert all(math.isfinite(v) and v >= 0 for v in stages.values())
    assert stages['total'] >= stages['inference']
    assert wait_for_log(client, detector.process, 'p99', 0, WAIT_S)
    assert 'Hz' in detector.process.log()


# --- model files ------------------------------------------------------------------------------

def test_missing_then_corrupt_model_keeps_node_up(client, processes, random_model_path):
    process, missing = processes['broken'], processes['missing']
    topics = DetectorTopics(client, BROKEN_NS)
    assert client.wait_for(topics.ready, STARTUP_S), process.log()
    log = process.log()
    assert 'cannot load the grasp model' in log and missing in log, log
    assert '[ERROR]' in log

    start = process.log_offset()
    depth, info = good_frame()
    assert topics.send_until(depth, info, lambda: 'no grasp model loaded' in process.log(start),
                             WAIT_S, resend_s=5.0), process.log(start)
    assert not any(topics.outputs(depth.header.stamp).values())

    corrupt = processes['folder'] / 'corrupt_at_start.pt'
    corrupt.write_bytes(b'\x80\x02garbage')
    (result,) = client.set_parameters(topics.node_name, {'model_path': str(corrupt)})
    assert not result.successful and str(corrupt) in result.reason, result.reason
    assert process.alive()

    start = process.log_offset()
    (result,) = client.set_parameters(topics.node_name, {'model_path': random_model_path})
    assert result.successful, result.reason
    # loaded in the background: the first int8 load of a model quantises it (tens of seconds)
    assert client.wait_for(
        lambda: 'grasp model loaded' in process.log(start)
        or 'cannot load' in process.log(start), STARTUP_S), process.log(start)
    assert 'grasp model loaded' in process.log(start), process.log(start)
    depth, info = good_frame()
    stamp = depth.header.stamp
    assert topics.send_until(depth, info, lambda: topics.served(stamp), WAIT_S), \
        process.log(start)
    assert topics.outputs(stamp)['grasps'][0].poses
    assert process.stop() == 0, process.log()


def test_sigint_exits_cleanly(detector):
    process = detector.process
    assert process.alive(), process.log()
    assert process.stop() == 0, process.log()
    assert 'Traceback' not in process.log(), process.log()


# --- configuration files (no ROS needed) ------------------------------------------------------

def test_yaml_defaults_match_declared_parameters():
    with open(CONFIG) as stream:
        data = yaml.safe_load(stream)
    (section,) = data.values()
    values = section['ros__parameters']
    assert set(values) == set(PARAMETERS)
    for name, value in values.items():
        default = PARAMETERS[name].default
        assert type(value) is type(default) and value == default, (name, value, default)


def test_parameter_descriptors_are_complete():
    for name, spec in PARAMETERS.items():
        descriptor = spec.descriptor()
        assert descriptor.description, name
        if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
            ranges = list(descriptor.floating_point_range) + list(descriptor.integer_range)
            assert len(ranges) == 1, name
            assert ranges[0].from_value <= spec.default <= ranges[0].to_value, name
