"""What a pick pipeline expects of the grasp_detector node, each node in its own process.

Start-up (integers for float parameters, refused settings with the reason and exit code 1),
output_frame without a transform (nothing published, said why), a camera_info published once
with transient-local durability, the latency with its frame's header, the gripper geometry and
tool frame conventions, on-demand detection through ``~/detect``, model reloads while frames
flow, and the colour input of the debug overlay. The nodes start at once to share the start-up
time; frames take seconds on this loaded 2-core machine, so waits are generous and every wait
ends as soon as its condition holds.
"""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from std_srvs.srv import Trigger

from grasp_fcn_ros.core.projection import quaternion_to_matrix
from grasp_fcn_ros.ros_conversions import cloud_to_array, latency_from_message, LATENCY_STAGES

from ros_harness import (
    camera_info_msg,
    depth_image_msg,
    DetectorTopics,
    NodeProcess,
    REPO_ROOT,
    ros_environment,
    RosClient,
    StampCounter,
    unique_domain_id,
    wait_for_log,
)
from scenes import box_on_plane, INTRINSICS

DOMAIN_ID = unique_domain_id(__name__)
FRAME = 'camera_depth_optical_frame'
FRAME_NS, LATCHED_NS, DEMAND_NS = '/frame', '/latched', '/demand'
#: Start-up (torch + rclpy import, model load) and one frame, on a loaded 2-core machine.
STARTUP_S = 180.0
WAIT_S = 90.0
#: The camera of the latched camera_info: unlike INTRINSICS, so its use is visible.
LATCHED_K = (500.0, 520.0, 300.0, 250.0)

STAMPS = StampCounter(start_sec=70000)


def info_for(stamp, k=None):
    fx, fy, cx, cy = k or (INTRINSICS.fx, INTRINSICS.fy, INTRINSICS.cx, INTRINSICS.cy)
    return camera_info_msg(fx, fy, cx, cy, INTRINSICS.width, INTRINSICS.height, stamp, FRAME)


def good_frame(with_info=True):
    """A box_on_plane 16UC1 frame with a fresh stamp, and its camera_info (or None)."""
    stamp = STAMPS.next()
    depth = depth_image_msg(box_on_plane(dtype=np.uint16), '16UC1', stamp, FRAME)
    return depth, (info_for(stamp) if with_info else None)


def start_failing(folder, name, arguments):
    """A node process expected to exit on its own; its output goes to ``folder/name.log``."""
    log = open(folder / f'{name}.log', 'wb')
    process = subprocess.Popen(
        [sys.executable, '-m', 'grasp_fcn_ros.node', '--ros-args', *arguments],
        stdout=log, stderr=subprocess.STDOUT, env=ros_environment(DOMAIN_ID), cwd=REPO_ROOT)
    process.log_file = log
    return process


def finished(process, timeout_s=STARTUP_S):
    """Exit code and output of a process started by :func:`start_failing`."""
    try:
        code = process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.log_file.close()
    with open(process.log_file.name, 'rb') as stream:
        return code, stream.read().decode('utf-8', errors='replace')


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def client():
    ros = RosClient(DOMAIN_ID, 'grasp_fcn_pick_client')
    yield ros
    ros.close()


@pytest.fixture(scope='module')
def processes(tmp_path_factory, random_model_path, client):
    folder = tmp_path_factory.mktemp('pick')
    # published once, before the node that needs it exists (reliable + transient-local)
    latched_qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, depth=1,
                             history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
    latched_pub = client.publisher(CameraInfo, f'{LATCHED_NS}/camera_info', latched_qos)
    latched_pub.publish(info_for(STAMPS.next(), LATCHED_K))

    yaml_file = folder / 'inconsistent.yaml'
    yaml_file.write_text('/**:\n  ros__parameters:\n    min_depth: 6\n    max_depth: 5\n')
    failing = {
        'yaml': start_failing(folder, 'yaml', ['--params-file', str(yaml_file),
                                               '-p', 'device:=cpu']),
        'type': start_failing(folder, 'type', ['-p', 'q_threshold:=high', '-p', 'device:=cpu']),
    }
    common = {'model_path': random_model_path, 'device': 'cpu', 'q_threshold': 0.0}
    # integers for the float parameters min_depth and max_depth: accepted
    main = NodeProcess(folder / 'main.log', DOMAIN_ID, dict(common, min_depth=0, max_depth=5))
    frame = NodeProcess(folder / 'frame.log', DOMAIN_ID, dict(common, output_frame='base_link'),
                        namespace=FRAME_NS)
    latched = NodeProcess(folder / 'latched.log', DOMAIN_ID, common, namespace=LATCHED_NS)
    demand = NodeProcess(folder / 'demand.log', DOMAIN_ID,
                         dict(common, detection_mode='on_demand', detect_timeout=60.0),
                         namespace=DEMAND_NS)
    yield {'main': main, 'frame': frame, 'latched': latched, 'demand': demand,
           'failing': failing, 'folder': folder, 'latched_pub': latched_pub}
    for process in (main, frame, latched, demand):
        process.stop()
    for process in failing.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def up(client, process, namespace=''):
    topics = DetectorTopics(client, namespace)
    assert client.wait_for(topics.ready, STARTUP_S), f'node did not come up:\n{process.log()}'
    topics.process = process
    return topics


@pytest.fixture(scope='module')
def detector(client, processes):
    return up(client, processes['main'])


# --- start-up ---------------------------------------------------------------------------------

def test_integers_accepted_for_float_parameters(detector, client):
    values = client.get_parameters(detector.node_name, ['min_depth', 'max_depth'])
    assert values == {'min_depth': 0.0, 'max_depth': 5.0}
    assert all(isinstance(v, float) for v in values.values())
    depth, info = good_frame()
    assert detector.serve(depth, info, WAIT_S)['grasps'][0].poses
    # at run time too (`ros2 param set grasp_detector max_depth 4`)
    (result,) = client.set_parameters(detector.node_name, {'max_depth': 4})
    assert result.successful, result.reason
    assert client.get_parameters(detector.node_name, ['max_depth']) == {'max_depth': 4.0}
    (result,) = client.set_parameters(detector.node_name, {'max_depth': 5.0})
    assert result.successful, result.reason


def test_inconsistent_settings_refused_at_start_with_the_reason(processes):
    code, log = finished(processes['failing']['yaml'])
    assert code == 1, log
    assert 'cannot start' in log and 'min_depth (6.0 m) must be smaller than max_depth' in log
    assert 'Traceback' not in log and 'AttributeError' not in log, log


def test_wrong_type_at_start_reports_the_real_reason(processes):
    code, log = finished(processes['failing']['type'])
    assert code == 1, log
    assert 'cannot start' in log and "'q_threshold'" in log and 'DOUBLE' in log, log
    assert 'Traceback' not in log and 'AttributeError' not in log, log


# --- output frame -----------------------------------------------------------------------------

def test_output_frame_without_transform_publishes_nothing_and_says_why(client, processes):
    process = processes['frame']
    topics = up(client, process, FRAME_NS)
    log = process.log()
    if importlib.util.find_spec('tf2_ros') is None:
        assert '[ERROR]' in log and 'tf2_ros' in log, log
        reason = 'tf2_ros'
    else:  # a full ROS installation: tf2 is there, but nobody publishes base_link
        reason = 'no transform'
    start = process.log_offset()
    text = "output_frame 'base_link' cannot be served" if reason == 'tf2_ros' else reason
    depth, info = good_frame()
    assert topics.send_until(depth, info, lambda: text in process.log(start), WAIT_S,
                             resend_s=10.0), process.log(start)
    again, again_info = good_frame()
    topics.send(again, again_info)
    # the node publishes nothing at all here, so no later output can serve as a barrier:
    # absence is checked over a window well beyond a frame's processing time
    client.wait_for(lambda: any(len(inbox) for inbox in topics.inbox.values()), 2.0)
    for msg in (depth, again):
        assert not any(topics.outputs(msg.header.stamp).values())
        assert not topics.inbox['latency'].with_stamp(msg.header.stamp)
    assert not any(len(inbox) for inbox in topics.inbox.values())
    assert process.log(start).count(text) == 1, process.log(start)  # throttled
    assert process.alive(), process.log()


# --- camera_info QoS --------------------------------------------------------------------------

def test_camera_info_published_once_transient_local_is_received(client, processes):
    process = processes['latched']
    topics = up(client, process, LATCHED_NS)
    depth, _ = good_frame(with_info=False)  # no camera_info sent with the frames
    out = topics.serve(depth, None, WAIT_S, resend_s=10.0)
    assert 'transient-local' in process.log()
    points = cloud_to_array(out['grasp_details'][0])
    assert points.size >= 1
    fx, fy, cx, cy = LATCHED_K
    for p in points:  # projected with the latched camera
        np.testing.assert_allclose([p['x'], p['y']], [(p['u'] - cx) * p['z'] / fx,
                                                      (p['v'] - cy) * p['z'] / fy], atol=1e-5)


# --- latency ----------------------------------------------------------------------------------

def test_latency_carries_the_frame_header(detector, client):
    depth, info = good_frame()
    stamp = depth.header.stamp
    detector.serve(depth, info, WAIT_S)
    assert client.wait_for(lambda: detector.inbox['latency'].with_stamp(stamp), WAIT_S)
    (msg,) = detector.inbox['latency'].with_stamp(stamp)
    assert msg.header.frame_id == FRAME
    stages = latency_from_message(msg)
    assert list(stages) == list(LATENCY_STAGES)
    assert all(np.isfinite(v) and v >= 0 for v in stages.values())
    assert stages['total'] >= stages['inference']


# --- gripper geometry -------------------------------------------------------------------------

def expected_tool(p, mode, offset_m):
    """The tool pose of a published grasp, worked out from its pixel, its angle and the camera:
    (position, closing direction, approach direction) in the camera frame. The surface under
    the grasp is the table (0.70 m) or the box top (0.65 m): the one nearer the published
    position is taken."""
    ray = np.array([(p['u'] - INTRINSICS.cx) / INTRINSICS.fx,
                    (p['v'] - INTRINSICS.cy) / INTRINSICS.fy, 1.0])
    du, dv = np.cos(p['angle']), -np.sin(p['angle'])
    along = np.array([du / INTRINSICS.fx, dv / INTRINSICS.fy, 0.0])
    if mode == 'camera_ray':
        approach = ray / np.linalg.norm(ray)
        closing = along - np.dot(along, approach) * approach
    else:  # top_down without output_frame: along the optical axis
        approach = np.array([0.0, 0.0, 1.0])
        closing = along
    closing /= np.linalg.norm(closing)
    published = np.array([p['x'], p['y'], p['z']])
    position = min((ray * z + offset_m * approach for z in (0.65, 0.70)),
                   key=lambda c: np.linalg.norm(c - published))
    return position, closing, approach


@pytest.mark.parametrize('convention, mode', [
    (('y', 'z'), 'camera_ray'), (('x', 'z'), 'top_down'), (('y', 'z'), 'top_down')],
    ids=['franka-camera-ray', 'default-top-down', 'franka-top-down'])
def test_tool_pose_for_gripper_conventions_and_approach_modes(detector, client, convention,
                                                               mode):
    closing_axis, approach_axis = convention
    offset = 0.02
    settings = {'gripper_closing_axis': closing_axis, 'gripper_approach_axis': approach_axis,
                'approach_mode': mode, 'grasp_depth_offset': offset}
    results = client.set_parameters(detector.node_name, settings)
    assert all(r.successful for r in results), [r.reason for r in results]
    try:
        depth, info = good_frame()
        out = detector.serve(depth, info, WAIT_S)
    finally:
        results = client.set_parameters(detector.node_name, {
            'gripper_closing_axis': 'x', 'gripper_approach_axis': 'z',
            'approach_mode': 'camera_ray', 'grasp_depth_offset': 0.0})
        assert all(r.successful for r in results), [r.reason for r in results]
    points = cloud_to_array(out['grasp_details'][0])
    assert points.size >= 1
    index = {'x': 0, 'y': 1, 'z': 2}
    for pose, p in zip(out['grasps'][0].poses, points):
        position, closing, approach = expected_tool(p, mode, offset)
        np.testing.assert_allclose([pose.position.x, pose.position.y, pose.position.z],
                                   position, atol=1e-4)
        r = quaternion_to_matrix([pose.orientation.x, pose.orientation.y, pose.orientation.z,
                                  pose.orientation.w])
        # the jaws close along the named axis (either way round), the named axis approaches
        assert abs(np.dot(r[:, index[closing_axis]], closing)) > 1 - 1e-4, (r, closing)
        np.testing.assert_allclose(r[:, index[approach_axis]], approach, atol=1e-4)
    glyph = out['markers'][0].markers[1]  # fingers drawn across the closing axis
    finger_axis = index[closing_axis]
    assert len({round(q.x if finger_axis == 0 else q.y, 6) for q in glyph.points}) >= 2


def test_grasps_outside_the_gripper_opening_are_dropped(detector, client):
    # every grasp of the frame is narrower than 0.9 m: a width is at most 150 network pixels,
    # under 0.3 m at this frame's scale
    (result,) = client.set_parameters(detector.node_name, {'gripper_min_opening': 0.9})
    assert result.successful, result.reason
    try:
        depth, info = good_frame()
        out = detector.serve(depth, info, WAIT_S)
    finally:
        (result,) = client.set_parameters(detector.node_name, {'gripper_min_opening': 0.0})
        assert result.successful, result.reason
    assert out['grasps'][0].poses == [] and out['grasp_details'][0].width == 0
    (result,) = client.set_parameters(detector.node_name, {'gripper_approach_axis': 'x'})
    assert not result.successful and 'must be different axes' in result.reason


# --- on demand --------------------------------------------------------------------------------

def test_on_demand_runs_only_the_next_frame_after_a_call(client, processes):
    process = processes['demand']
    topics = up(client, process, DEMAND_NS)
    detect = client.node.create_client(Trigger, f'{topics.node_name}/detect')
    assert client.wait_for(detect.service_is_ready, WAIT_S)
    latency = topics.inbox['latency']

    def idle_frames(count):
        """Frames nobody asked for (paced a little apart); the next call's frame is the
        barrier that shows they were never processed (outputs arrive in order)."""
        for _ in range(count):
            depth, info = good_frame()
            topics.send(depth, info)
            client.wait_for(lambda: False, 0.3)

    for calls in (1, 2):
        idle_frames(3)
        future = detect.call_async(Trigger.Request())
        depth, info = good_frame()
        assert topics.send_until(depth, info, future.done, WAIT_S, resend_s=5.0), process.log()
        answer = future.result()
        stamp = depth.header.stamp
        assert answer.success, answer.message
        assert f'stamped {stamp.sec}.{stamp.nanosec:09d}' in answer.message, answer.message
        assert 'grasps' in answer.message and 'best: quality' in answer.message
        assert client.wait_for(lambda: topics.served(stamp) and latency.with_stamp(stamp),
                               WAIT_S)
        # outputs arrive in order: the idle frames sent before this call were never processed
        assert len(latency) == calls, [m.header.stamp for m in latency.messages]
        assert len(topics.inbox['grasps']) == calls


# --- model reload -----------------------------------------------------------------------------

def test_model_reload_keeps_serving_and_swaps_to_the_new_model(detector, client, processes):
    import torch

    from grasp_fcn_ros.core.model import GraspFCN, save_checkpoint

    torch.manual_seed(1)
    second = str(processes['folder'] / 'second.pt')
    save_checkpoint(second, GraspFCN().eval(), {'trained': False})
    process = detector.process

    def qualities():
        depth, info = good_frame()  # the same scene each time, a new stamp
        points = cloud_to_array(detector.serve(depth, info, WAIT_S)['grasp_details'][0])
        return np.sort(points['quality'])

    before = qualities()
    start = process.log_offset()
    (result,) = client.set_parameters(detector.node_name, {'model_path': second})
    assert result.successful, result.reason
    # the answer came before the model was built: the load runs off the executor, which still
    # serves the parameter services, and the worker still serves frames with the old model
    assert 'grasp model loaded' not in process.log(start), process.log(start)
    assert client.get_parameters(detector.node_name, ['model_path']) == {'model_path': second}
    qualities()
    # a new model: its first int8 load quantises it (tens of seconds on a slow machine)
    assert wait_for_log(client, process, 'grasp model loaded', start, STARTUP_S), \
        process.log(start)
    assert second in process.log(start)
    after = qualities()
    assert before.shape != after.shape or not np.allclose(before, after), (before, after)


def test_nodes_stop_cleanly(detector, processes):
    for name in ('main', 'frame', 'latched', 'demand'):
        process = processes[name]
        assert process.stop() == 0, process.log()
        assert 'Traceback' not in process.log(), process.log()
