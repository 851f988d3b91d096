"""Faults a deployed grasp_detector meets, each driven against the node in its own process.

The camera vanishes and a new one appears; camera_info arrives late, or the resolution changes
mid-stream; frames come out of order; ``device: cuda`` without a GPU, at start-up and at run
time; parameters change while frames flow; a frame without grasps follows one with grasps. The
node must survive each, say what is wrong, and serve the next consistent frame: outputs carry
the stamp of the frame they belong to and never repeat an older frame's grasps.

One node process (random weights, q_threshold 0 so every frame has grasps) serves most tests; a
second one, in its own namespace, starts with ``device: cuda``. Frames take seconds on this
loaded 2-core machine, so waits are generous and end as soon as their condition holds.
"""

import math

import numpy as np
import pytest
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from grasp_fcn_ros.ros_conversions import cloud_to_array

from ros_harness import (
    camera_info_msg,
    CameraProcess,
    client_fixture,
    depth_image_msg,
    DetectorTopics,
    NodeProcess,
    StampCounter,
    unique_domain_id,
    wait_for_log,
)
from scenes import box_on_plane, INTRINSICS

DOMAIN_ID = unique_domain_id(__name__)
FRAME = 'camera_depth_optical_frame'
GPU_NS = '/gpu'
#: Start-up (torch + rclpy import, model load) and one frame, on a loaded 2-core machine.
STARTUP_S = 180.0
WAIT_S = 90.0
#: Valid depth range of the main node (its defaults).
MIN_DEPTH_M, MAX_DEPTH_M = 0.1, 5.0

STAMPS = StampCounter(start_sec=20000)
#: A box filling the centred 400 px crop of a 640x480 frame (the table around it), and none.
CROP_BOX = (120, 40, 400, 400)
NO_BOX = (0, 0, 0, 0)


def info_for(stamp, width=640, height=480, k=None):
    fx, fy, cx, cy = k or (INTRINSICS.fx, INTRINSICS.fy, width / 2, height / 2)
    return camera_info_msg(fx, fy, cx, cy, width, height, stamp, FRAME)


def frame(width=640, height=480, plane_m=0.70, with_info=True, k=None, stamp=None, box=None):
    """A box_on_plane 16UC1 frame with a fresh stamp, and its camera_info (or None).

    :param box: (u0, v0, w, h) of the box, pixels; default a 60x40 box in the centre.
    """
    stamp = stamp or STAMPS.next()
    box = box or (width // 2 - 30, height // 2 - 20, 60, 40)
    depth = box_on_plane(width, height, plane_m=plane_m, box=box, dtype=np.uint16)
    info = info_for(stamp, width, height, k) if with_info else None
    return depth_image_msg(depth, '16UC1', stamp, FRAME), info


def key(stamp):
    return stamp.sec, stamp.nanosec


def grasp_points(outputs):
    """The ~/grasp_details points of one frame's outputs (checked against ~/grasps)."""
    (cloud,) = outputs['grasp_details']
    (poses,) = outputs['grasps']
    points = cloud_to_array(cloud)
    assert len(points) == len(poses.poses)
    for pose, p in zip(poses.poses, points):
        np.testing.assert_allclose([pose.position.x, pose.position.y, pose.position.z],
                                   [p['x'], p['y'], p['z']], atol=1e-5)
    return points


def assert_valid_grasps(points, width, height, k, plane_range):
    """Finite, unit quaternion, inside the image, on the scene's surfaces, projected with K."""
    fx, fy, cx, cy = k
    for p in points:
        values = np.array([p[name] for name in points.dtype.names], dtype=np.float64)
        assert np.all(np.isfinite(values)), p
        q = np.array([p['qx'], p['qy'], p['qz'], p['qw']])
        assert abs(np.linalg.norm(q) - 1.0) < 1e-5, p
        assert -0.5 <= p['u'] < width - 0.5 and -0.5 <= p['v'] < height - 0.5, p
        assert plane_range[0] - 1e-4 <= p['z'] <= plane_range[1] + 1e-4, p
        assert MIN_DEPTH_M <= p['z'] <= MAX_DEPTH_M
        np.testing.assert_allclose([p['x'], p['y']], [(p['u'] - cx) * p['z'] / fx,
                                                      (p['v'] - cy) * p['z'] / fy], atol=1e-4)


# --- fixtures ---------------------------------------------------------------------------------

client = client_fixture(DOMAIN_ID, 'grasp_fcn_fault_client')


@pytest.fixture(scope='module')
def processes(tmp_path_factory, random_model_path):
    folder = tmp_path_factory.mktemp('faults')
    main = NodeProcess(folder / 'detector.log', DOMAIN_ID, {
        'model_path': random_model_path, 'device': 'cpu', 'q_threshold': 0.0})
    gpu = NodeProcess(folder / 'gpu.log', DOMAIN_ID, {
        'model_path': random_model_path, 'device': 'cuda', 'q_threshold': 0.0},
        namespace=GPU_NS)
    yield {'main': main, 'gpu': gpu, 'folder': folder}
    for process in (main, gpu):
        process.stop()


@pytest.fixture(scope='module')
def detector(client, processes):
    """The main node, up; it first gets frames without any camera_info, then a camera_info
    on its own (stamped unlike any frame, as a slow driver sends it), then frames again."""
    process = processes['main']
    topics = DetectorTopics(client)
    assert client.wait_for(topics.ready, STARTUP_S), f'node did not come up:\n{process.log()}'
    topics.process = process
    start = process.log_offset()
    early = [frame(with_info=False)[0] for _ in range(3)]
    warned = topics.send_until(
        early[0], None, lambda: 'no camera_info received yet' in process.log(start), WAIT_S,
        resend_s=5.0)
    for msg in early[1:]:
        topics.send(msg)
    drained = drain_without_camera_info(client, topics)
    warnings_log = process.log(start)
    late_info = info_for(STAMPS.next())
    late = frame(with_info=False)[0]

    def send_info_then_frame(depth, _info):
        topics.info_pub.publish(late_info)  # again on a resend: camera_info is best effort
        topics.depth_pub.publish(depth)

    served = topics.send_until(late, None, lambda: topics.served(late.header.stamp), WAIT_S,
                               send=send_info_then_frame)
    topics.late_info = {'warned': warned, 'log': warnings_log, 'early': early, 'late': late,
                        'served': served, 'drained': drained}
    return topics


#: Size of the barrier frames of :func:`drain_without_camera_info` (the skip message names it).
BARRIER_SIZE = (320, 240)


def drain_without_camera_info(client, topics, rounds=5):
    """Wait until the node has taken every frame sent so far, before any camera_info.

    The node applies the newest camera_info to a frame when it processes it, so a frame still
    queued when camera_info arrives is served. A ``~/detect`` call answers with the outcome of
    the next frame processed: barrier frames of another size, sent after the call, show in
    the answer ("depth frame 320x240 ... skipped") when it was one of them; frames are taken
    in order, newest first, so every earlier frame was taken before it.

    :returns: True once a barrier frame's answer came back.
    """
    detect = client.node.create_client(Trigger, f'{topics.node_name}/detect')
    assert client.wait_for(detect.service_is_ready, WAIT_S)
    size = '{}x{}'.format(*BARRIER_SIZE)
    for _ in range(rounds):
        future = detect.call_async(Trigger.Request())
        barrier = frame(*BARRIER_SIZE, with_info=False)[0]
        if not topics.send_until(barrier, None, future.done, WAIT_S, resend_s=5.0):
            return False
        answer = future.result()
        assert not answer.success, answer.message  # no camera_info yet: skipped
        if f'depth frame {size}' in answer.message:
            return True
    return False


# --- camera_info late; camera gone and back ---------------------------------------------------

def test_frames_before_camera_info_warned_then_served_once_it_arrives(detector):
    late = detector.late_info
    assert late['warned'], late['log']
    assert '[WARN]' in late['log'] and "'/camera_info'" in late['log'], late['log']
    assert late['served'], detector.process.log()
    assert late['drained'], detector.process.log()
    for msg in late['early']:  # nothing published for frames without camera_info
        assert not any(detector.outputs(msg.header.stamp).values())
    points = grasp_points(detector.outputs(late['late'].header.stamp))
    assert len(points) >= 1
    assert_valid_grasps(points, 640, 480, (INTRINSICS.fx, INTRINSICS.fy, 320.0, 240.0),
                        (0.65, 0.70))


def test_camera_process_vanishes_and_a_new_one_is_served(detector, client, processes):
    folder = processes['folder']

    def answered(camera):
        return [m for m in detector.inbox['grasps'].messages if camera.owns(m.header.stamp)]

    first = CameraProcess(folder / 'camera1.log', DOMAIN_ID, first_sec=50000, rate_hz=5.0)
    try:
        assert client.wait_for(lambda: len(answered(first)) >= 2, WAIT_S), (
            first.log(), detector.process.log())
    finally:
        first.kill()
    assert detector.process.alive(), detector.process.log()

    second = CameraProcess(folder / 'camera2.log', DOMAIN_ID, first_sec=60000, rate_hz=5.0,
                           width=320, height=240)
    (result,) = client.set_parameters(detector.node_name, {'crop_size': 0})
    assert result.successful, result.reason
    try:
        assert client.wait_for(lambda: len(answered(second)) >= 2, WAIT_S), (
            second.log(), detector.process.log())
    finally:
        assert second.stop() == 0, second.log()
        (result,) = client.set_parameters(detector.node_name, {'crop_size': 400})
        assert result.successful, result.reason
    for msg in answered(second):
        points = grasp_points(detector.outputs(msg.header.stamp))
        assert_valid_grasps(points, 320, 240, (585.0, 585.0, 160.0, 120.0), (0.65, 0.70))
    # the first camera's frames were never answered again after it vanished
    first_keys = [key(m.header.stamp) for m in answered(first)]
    assert len(first_keys) == len(set(first_keys))
    assert detector.process.alive() and 'Traceback' not in detector.process.log()


# --- resolution change ------------------------------------------------------------------------

def test_resolution_change_mid_stream(detector, client):
    process = detector.process
    # 640x480 with the 400 px crop: served
    depth, info = frame()
    assert len(grasp_points(detector.serve(depth, info, WAIT_S))) >= 1

    # the camera switches to 320x240 but its camera_info still says 640x480: warned
    start = process.log_offset()
    small, _ = frame(320, 240, with_info=False)
    text = 'camera_info is for 640x480 but the depth image is 320x240'
    assert detector.send_until(small, None, lambda: text in process.log(start), WAIT_S,
                               resend_s=5.0), process.log(start)

    # consistent camera_info now, but the 400 px crop does not fit: warned
    small, small_info = frame(320, 240)
    text = 'image 320x240 is smaller than the crop 400x400'
    assert detector.send_until(small, small_info, lambda: text in process.log(start), WAIT_S,
                               resend_s=5.0), process.log(start)
    assert '[WARN]' in process.log(start)
    refused = small

    # crop_size 0 (the largest centred square) at run time: served at both resolutions
    (result,) = client.set_parameters(detector.node_name, {'crop_size': 0})
    assert result.successful, result.reason
    try:
        small, small_info = frame(320, 240)
        points = grasp_points(detector.flush(small, small_info, WAIT_S))
        assert not any(detector.outputs(refused.header.stamp).values())
        assert len(points) >= 1
        assert_valid_grasps(points, 320, 240, (INTRINSICS.fx, INTRINSICS.fy, 160.0, 120.0),
                            (0.65, 0.70))
        assert np.all((points['u'] >= 40 - 0.5) & (points['u'] <= 280 - 0.5))  # 240 px crop
        depth, info = frame()
        points = grasp_points(detector.serve(depth, info, WAIT_S))
        assert_valid_grasps(points, 640, 480, (INTRINSICS.fx, INTRINSICS.fy, 320.0, 240.0),
                            (0.65, 0.70))
        assert np.all((points['u'] >= 80 - 0.5) & (points['u'] <= 560 - 0.5))  # 480 px crop
    finally:
        (result,) = client.set_parameters(detector.node_name, {'crop_size': 400})
        assert result.successful, result.reason


# --- stamps -----------------------------------------------------------------------------------

def test_out_of_order_frames_keep_their_own_stamp_content_and_camera_info(detector, client):
    k_new = (585.0, 585.0, 320.0, 240.0)
    k_old = (400.0, 420.0, 300.0, 250.0)
    new, new_info = frame(plane_m=0.70, k=k_new)
    new_out = detector.serve(new, new_info, WAIT_S, resend_s=WAIT_S)
    assert_valid_grasps(grasp_points(new_out), 640, 480, k_new, (0.65, 0.70))

    # a frame stamped in the past, with a different scene and camera; its camera_info arrives
    # before a newer one, so pairing by stamp (not "the newest") decides which K is used
    old_stamp = type(new.header.stamp)(sec=new.header.stamp.sec - 500, nanosec=7)
    old, old_info = frame(plane_m=0.90, k=k_old, stamp=old_stamp)
    newer_info = info_for(STAMPS.next(), k=k_new)

    def infos_then_old(depth, _info):
        detector.info_pub.publish(old_info)
        detector.info_pub.publish(newer_info)
        # camera_info has no answer of its own: a frame stamped like the newer camera_info,
        # once served, shows that both (published in order on one topic) have arrived
        probe, _ = frame(plane_m=0.70, stamp=newer_info.header.stamp)
        detector.serve(probe, None, WAIT_S, resend_s=5.0)
        detector.depth_pub.publish(depth)

    assert detector.send_until(old, None, lambda: detector.served(old_stamp), WAIT_S,
                               resend_s=WAIT_S, send=infos_then_old)
    old_points = grasp_points(detector.outputs(old_stamp))
    assert len(old_points) >= 1
    assert_valid_grasps(old_points, 640, 480, k_old, (0.85, 0.90))
    out = detector.outputs(old_stamp)
    assert all(m.header.stamp == old_stamp for m in out['grasps'] + out['grasp_details'])
    assert all(m.header.stamp == old_stamp for m in out['markers'][0].markers)

    # the newer frame's outputs were published once and never again
    again = detector.outputs(new.header.stamp)
    assert all(len(again[name]) == 1 for name in ('grasps', 'grasp_details', 'markers'))
    # and a next frame is answered with its own content
    nxt, nxt_info = frame(plane_m=0.70)
    assert_valid_grasps(grasp_points(detector.serve(nxt, nxt_info, WAIT_S)), 640, 480,
                        k_new, (0.65, 0.70))


# --- honest outputs ---------------------------------------------------------------------------

def test_frame_without_grasps_after_one_with_grasps_clears_everything(detector, client):
    with_grasps, info = frame()
    first = detector.serve(with_grasps, info, WAIT_S, resend_s=WAIT_S)
    assert len(first['grasps'][0].poses) >= 1 and first['best_grasp']

    (result,) = client.set_parameters(detector.node_name, {'q_threshold': 1.0})
    assert result.successful, result.reason
    try:
        counts = {name: len(inbox) for name, inbox in detector.inbox.items()}
        without, info = frame()
        detector.serve(without, info, WAIT_S, resend_s=WAIT_S)
    finally:
        (result,) = client.set_parameters(detector.node_name, {'q_threshold': 0.0})
        assert result.successful, result.reason
    barrier, info = frame()
    detector.flush(barrier, info, WAIT_S)  # what was not published by now never will be
    out = detector.outputs(without.header.stamp)

    (poses,), (cloud,), (markers,) = out['grasps'], out['grasp_details'], out['markers']
    assert poses.poses == [] and poses.header.stamp == without.header.stamp
    assert cloud.width == 0 and len(cloud.data) == 0 and cloud.header.stamp == (
        without.header.stamp)
    assert [m.action for m in markers.markers] == [Marker.DELETEALL]
    assert markers.markers[0].header.stamp == without.header.stamp
    assert out['best_grasp'] == []
    # everything that arrived after the frame without grasps was sent, up to the next frame,
    # belongs to it
    for name, inbox in detector.inbox.items():
        if name == 'latency':
            continue
        for msg in inbox.messages[counts[name]:]:
            stamp = msg.markers[0].header.stamp if name == 'markers' else msg.header.stamp
            assert stamp in (without.header.stamp, barrier.header.stamp), (name, stamp)
    earlier = detector.outputs(with_grasps.header.stamp)  # published once, never again
    assert all(len(earlier[name]) == 1 for name in ('grasps', 'grasp_details', 'markers'))


# --- parameters at run time -------------------------------------------------------------------

def test_max_grasps_change_applies_on_next_frame(detector, client):
    depth, info = frame()
    before = len(grasp_points(detector.serve(depth, info, WAIT_S)))
    assert before > 2, f'the random network gave only {before} grasps; the test needs more'
    (result,) = client.set_parameters(detector.node_name, {'max_grasps': 2})
    assert result.successful, result.reason
    try:
        depth, info = frame()
        out = detector.serve(depth, info, WAIT_S)
        assert 1 <= len(grasp_points(out)) <= 2
        assert len(out['markers'][0].markers) == 1 + len(out['grasps'][0].poses)
    finally:
        (result,) = client.set_parameters(detector.node_name, {'max_grasps': 5})
        assert result.successful, result.reason
    depth, info = frame()
    assert len(grasp_points(detector.serve(depth, info, WAIT_S))) == before


def test_depth_range_change_applies_on_next_frame(detector, client):
    process = detector.process
    (result,) = client.set_parameters(detector.node_name, {'max_depth': 0.68})
    assert result.successful, result.reason
    try:
        # the box (0.65 m) fills the crop; the table (0.70 m) around it is out of range now
        depth, info = frame(box=CROP_BOX)
        points = grasp_points(detector.serve(depth, info, WAIT_S))
        assert len(points) >= 1
        assert np.all(np.abs(points['z'] - 0.65) < 1e-4), points['z']
        # only the table: nothing in range
        start = process.log_offset()
        table, info = frame(box=NO_BOX)
        text = 'out of range [0.1, 0.68] m'
        assert detector.send_until(table, info, lambda: text in process.log(start), WAIT_S,
                                   resend_s=5.0), process.log(start)
        # max_depth below min_depth: refused, the old value kept
        (result,) = client.set_parameters(detector.node_name, {'max_depth': 0.05})
        assert not result.successful and 'must be smaller than max_depth' in result.reason
        assert client.get_parameters(detector.node_name, ['max_depth']) == {'max_depth': 0.68}
    finally:
        (result,) = client.set_parameters(detector.node_name, {'max_depth': MAX_DEPTH_M})
        assert result.successful, result.reason
    table, info = frame(box=NO_BOX)
    points = grasp_points(detector.serve(table, info, WAIT_S))
    assert len(points) >= 1 and np.all(np.abs(points['z'] - 0.70) < 1e-4), points['z']


def test_crop_offset_leaving_the_image_warns_then_recovers(detector, client):
    process = detector.process
    (result,) = client.set_parameters(detector.node_name, {'crop_offset_x': 200})
    assert result.successful, result.reason  # the image size is unknown until a frame comes
    start = process.log_offset()
    try:
        depth, info = frame()
        text = 'shifted by (200, 0) px leaves the 640x480 image'
        assert detector.send_until(depth, info, lambda: text in process.log(start), WAIT_S,
                                   resend_s=5.0), process.log(start)
    finally:
        (result,) = client.set_parameters(detector.node_name, {'crop_offset_x': 0})
        assert result.successful, result.reason
    refused = depth
    depth, info = frame()
    assert len(grasp_points(detector.flush(depth, info, WAIT_S))) >= 1
    assert not any(detector.outputs(refused.header.stamp).values())


# --- device: cuda without a GPU ---------------------------------------------------------------

def _cuda_available():
    import torch
    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda_available(), reason='this machine has a CUDA device')
def test_cuda_refused_at_run_time_old_model_kept(detector, client):
    for device in ('cuda', 'cuda:0'):
        (result,) = client.set_parameters(detector.node_name, {'device': device})
        assert not result.successful
        assert f"device '{device}' requested but CUDA is not available" in result.reason, (
            result.reason)
        assert 'keeping the current model' in result.reason
        assert client.get_parameters(detector.node_name, ['device']) == {'device': 'cpu'}
    depth, info = frame()
    assert len(grasp_points(detector.serve(depth, info, WAIT_S))) >= 1


@pytest.mark.skipif(_cuda_available(), reason='this machine has a CUDA device')
def test_cuda_at_start_up_is_a_clear_error_then_auto_serves(client, processes):
    """``device: cuda`` without CUDA never silently runs on the CPU: the node stays up without a
    model, says why and what to do, and serves once ``device`` is set to ``auto``."""
    process = processes['gpu']
    topics = DetectorTopics(client, GPU_NS)
    assert client.wait_for(topics.ready, STARTUP_S), process.log()
    log = process.log()
    assert '[ERROR]' in log and "device 'cuda' requested but CUDA is not available" in log, log
    assert "use 'auto' to fall back to the CPU" in log and 'stays up without a model' in log
    assert client.get_parameters(topics.node_name, ['device']) == {'device': 'cuda'}

    start = process.log_offset()
    depth, info = frame()
    assert topics.send_until(depth, info, lambda: 'no grasp model loaded' in process.log(start),
                             WAIT_S, resend_s=5.0), process.log(start)
    assert not any(topics.outputs(depth.header.stamp).values())

    (result,) = client.set_parameters(topics.node_name, {'device': 'cuda'})
    assert not result.successful and 'CUDA is not available' in result.reason, result.reason
    (result,) = client.set_parameters(topics.node_name, {'device': 'auto'})
    assert result.successful, result.reason
    assert wait_for_log(client, process, 'on cpu', start, WAIT_S), process.log(start)
    depth, info = frame()
    points = grasp_points(topics.serve(depth, info, WAIT_S))
    assert len(points) >= 1 and all(math.isfinite(float(z)) for z in points['z'])
    assert process.stop() == 0, process.log()
    assert 'Traceback' not in process.log()


def test_node_survived_every_fault(detector):
    process = detector.process
    assert process.alive(), process.log()
    assert 'Traceback' not in process.log(), process.log()
    assert process.stop() == 0, process.log()
