"""The grasp_detector node inside the test process: what needs a hand on its insides.

A transform lookup is injected for ``output_frame`` (tf2_ros is not on PyPI), and the node's
logger is replaced by one that counts warnings, so that throttling is measured message by
message. The node and the test's publishers share one rclpy context.
"""

import itertools
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
import torch

from grasp_fcn_ros import node as node_module
from grasp_fcn_ros.core.backends import create_backend
from grasp_fcn_ros.core.model import save_random_checkpoint
from grasp_fcn_ros.node import GraspDetectorNode, WARN_THROTTLE_S
from grasp_fcn_ros.ros_conversions import cloud_to_array

from ros_harness import (
    camera_info_msg,
    client_fixture,
    depth_image_msg,
    DetectorTopics,
    StampCounter,
    unique_domain_id,
)
from scenes import box_on_plane, FakeLookup, INTRINSICS

DOMAIN_ID = unique_domain_id(__name__)
FRAME = 'camera_depth_optical_frame'
BASE = 'base_link'
#: The camera 1 m above the base origin and 0.5 m along its X, looking straight down: a half
#: turn about X maps camera (x, y, z) to base (x + 0.5, -y, 1 - z).
CAMERA_IN_BASE = (np.array([0.5, 0.0, 1.0]), np.array([1.0, 0.0, 0.0, 0.0]))
WAIT_S = 60.0
STAMPS = StampCounter(start_sec=70000)


class CountingLogger:
    """Stands in for the node's logger: keeps every warning and error."""

    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(('warning', text))

    def error(self, text):
        self.lines.append(('error', text))

    def info(self, text):
        pass

    def count(self, words):
        return sum(words in text for _, text in self.lines)


client = client_fixture(DOMAIN_ID, 'grasp_fcn_in_process_client')


@pytest.fixture(scope='module')
def detector(client, random_model_path):
    lookup = FakeLookup({(BASE, FRAME): CAMERA_IN_BASE})
    node = GraspDetectorNode(
        tf_lookup=lookup, context=client.context, parameter_overrides=[
            Parameter('model_path', value=random_model_path), Parameter('device', value='cpu'),
            Parameter('q_threshold', value=0.0), Parameter('output_frame', value=BASE)])
    client.executor.add_node(node)
    topics = DetectorTopics(client)
    assert client.wait_for(topics.ready, WAIT_S)
    topics.node, topics.lookup = node, lookup
    yield topics
    client.executor.remove_node(node)
    node.destroy_node()


def good_frame():
    stamp = STAMPS.next()
    return (depth_image_msg(box_on_plane(dtype=np.uint16), '16UC1', stamp, FRAME),
            camera_info_msg(INTRINSICS.fx, INTRINSICS.fy, INTRINSICS.cx, INTRINSICS.cy,
                            INTRINSICS.width, INTRINSICS.height, stamp, FRAME))


def test_grasps_are_published_in_the_output_frame(detector):
    depth, info = good_frame()
    out = detector.serve(depth, info, WAIT_S)
    assert detector.lookup.calls[-1] == (BASE, FRAME, depth.header.stamp)
    (poses,), (cloud,), (markers,) = out['grasps'], out['grasp_details'], out['markers']
    assert poses.header.frame_id == cloud.header.frame_id == BASE
    assert all(m.header.frame_id == BASE for m in markers.markers)
    points = cloud_to_array(cloud)
    assert len(points) == len(poses.poses) >= 1
    for pose, p in zip(poses.poses, points):
        # the camera-frame point of pixel (u, v) on the box top (0.65 m) or the table (0.70 m)
        z_camera = 1.0 - pose.position.z
        assert min(abs(z_camera - 0.65), abs(z_camera - 0.70)) < 1e-4, z_camera
        x_camera = (p['u'] - 320.0) * z_camera / 585.0
        y_camera = (p['v'] - 240.0) * z_camera / 585.0
        np.testing.assert_allclose(
            [pose.position.x, pose.position.y], [x_camera + 0.5, -y_camera], atol=1e-5)
        np.testing.assert_allclose([p['x'], p['y'], p['z']],
                                   [pose.position.x, pose.position.y, pose.position.z],
                                   atol=1e-6)
        # the approach (+Z of the grasp) runs along the camera ray, turned into the base frame
        ray = np.array([x_camera, y_camera, z_camera]) / np.linalg.norm(
            [x_camera, y_camera, z_camera])
        q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z])
        w = pose.orientation.w
        approach = 2 * w * np.cross(q, [0, 0, 1]) + 2 * np.cross(q, np.cross(q, [0, 0, 1]))
        approach[2] += 1.0
        np.testing.assert_allclose(approach, [ray[0], -ray[1], -ray[2]], atol=1e-5)
    best = out['best_grasp']
    if best:
        assert best[0].header.frame_id == BASE and best[0].pose == poses.poses[0]


def _bad_frame():
    stamp = STAMPS.next()
    depth = np.zeros((480, 640), np.uint16)
    return depth_image_msg(depth, '16UC1', stamp, FRAME), camera_info_msg(
        585.0, 585.0, 320.0, 240.0, 640, 480, stamp, FRAME)


def test_a_repeated_problem_is_logged_once_per_throttle_period(detector, monkeypatch):
    node = detector.node
    logger = CountingLogger()
    monkeypatch.setattr(node, 'get_logger', lambda: logger)
    now = [1000.0]  # the node's clock, seconds
    monkeypatch.setattr(node_module, 'time', types.SimpleNamespace(
        monotonic=lambda: now[0], perf_counter=time.perf_counter))
    text = 'no valid depth inside the crop'

    def process(msg, info):
        node._on_camera_info(info)
        node._process(msg, time.perf_counter())

    for _ in range(5):  # five bad frames within one throttle period: one warning
        process(*_bad_frame())
        now[0] += WARN_THROTTLE_S / 10
    assert logger.count(text) == 1, logger.lines
    now[0] += WARN_THROTTLE_S  # the period is over: the next one is logged again
    process(*_bad_frame())
    assert logger.count(text) == 2, logger.lines
    process(*_bad_frame())
    assert logger.count(text) == 2, logger.lines
    process(*good_frame())  # a good frame ends the problem: its next occurrence is news
    process(*_bad_frame())
    assert logger.count(text) == 3, logger.lines
    assert all(level == 'warning' for level, _ in logger.lines)


def test_best_effort_publishers_a_reliable_subscription_misses_are_warned_about_once(
        detector, monkeypatch):
    node = detector.node
    logger = CountingLogger()
    monkeypatch.setattr(node, 'get_logger', lambda: logger)
    monkeypatch.setattr(node, '_incompatible_publishers', {})
    reliable, best_effort = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
    text = "1 publisher(s) of '/cam/depth' offer best-effort reliability"

    def check(reliability, *offered):
        node._warn_incompatible_publishers('/cam/depth', reliability, offered)

    check('reliable', reliable)
    assert logger.lines == []
    check('reliable', reliable, best_effort)
    check('reliable', best_effort, reliable)  # the same publishers, checked again: no news
    assert logger.count(text) == 1 and len(logger.lines) == 1, logger.lines
    check('reliable', best_effort, best_effort)  # one more
    assert logger.count('2 publisher(s)') == 1, logger.lines
    check('best_effort', best_effort, best_effort)  # best effort receives from every one
    check('reliable', best_effort)  # gone and back: news again
    assert logger.count(text) == 2 and len(logger.lines) == 3, logger.lines
    assert all(level == 'warning' for level, _ in logger.lines)


def test_a_metric_crop_larger_than_the_image_is_clamped_with_a_warning(detector, monkeypatch,
                                                                         tmp_path):
    # a model trained at 2 mm per network pixel sees the table at 0.70 m through fx = 585 px:
    # it asks for a 0.002 * 400 * 585 / 0.70 = 669 px crop of the 640x480 frame
    path = str(tmp_path / 'scaled.pt')
    save_random_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    payload['config']['metres_per_pixel'] = 0.002
    torch.save(payload, path)
    node = detector.node
    logger = CountingLogger()
    monkeypatch.setattr(node, 'get_logger', lambda: logger)
    monkeypatch.setattr(node, '_backend', create_backend(path, 'torch', 'cpu'))
    depth, info = good_frame()
    node._on_camera_info(info)
    served, _ = node._process(depth, time.perf_counter())
    assert served
    assert logger.count('the metric crop of 669 px does not fit; clamped to 480 px') == 1, (
        logger.lines)


def test_test_time_mirror_reloads_the_model_with_the_mirrored_view(detector, client):
    node = detector.node
    plain = node._backend
    result = node.set_parameters([Parameter('test_time_mirror', value=True)])[0]
    assert result.successful, result.reason
    try:
        assert client.wait_for(lambda: node._backend is not plain
                               and getattr(node._backend, 'mirror', False), WAIT_S)
        mirrored = node._backend
        assert 'mirrored view' in mirrored.name
        x = np.random.default_rng(0).normal(0.0, 0.05, (1, 1, 400, 400)).astype(np.float32)
        # the same runtime as the mirrored view's (whatever backend: auto chose it)
        once = plain.predict(x)
        back = plain.predict(np.ascontiguousarray(x[..., ::-1]))[..., ::-1].copy()
        back[:, 2] *= -1.0  # sin 2phi of the mirror image
        np.testing.assert_allclose(mirrored.predict(x), (once + back) / 2, atol=1e-5)
    finally:
        assert node.set_parameters([Parameter('test_time_mirror', value=False)])[0].successful
        assert client.wait_for(lambda: not getattr(node._backend, 'mirror', False), WAIT_S)


def test_inference_threads_reload_the_model_with_that_many_threads(detector, client):
    node = detector.node
    before = node._backend
    result = node.set_parameters([Parameter('inference_threads', value=1)])[0]
    assert result.successful, result.reason
    try:
        assert client.wait_for(lambda: node._backend is not before, WAIT_S)
        assert node._backend.threads == 1
        assert ', 1 threads' in node._describe_backend(node._backend)
        compiled = getattr(node._backend, 'compiled', None)
        if hasattr(compiled, 'get_property'):  # OpenVINO, which auto chooses where installed
            assert int(compiled.get_property('INFERENCE_NUM_THREADS')) == 1
    finally:
        one = node._backend
        assert node.set_parameters([Parameter('inference_threads', value=0)])[0].successful
        assert client.wait_for(lambda: node._backend is not one, WAIT_S)
    assert node._backend.threads == before.threads


def test_an_int8_calibration_folder_without_depth_frames_is_refused(detector, tmp_path):
    pytest.importorskip('openvino')
    node = detector.node
    before = dict(node._values)
    (tmp_path / 'notes.txt').write_text('no depth frames here')
    for folder, words in ((tmp_path, 'no depth frames'), (tmp_path / 'missing', 'does not exist')):
        result = node.set_parameters_atomically([
            Parameter('backend', value='openvino'), Parameter('precision', value='int8'),
            Parameter('int8_calibration', value=str(folder))])
        assert not result.successful and words in result.reason, result.reason
        assert 'keeping the current model' in result.reason
    assert {k: node._values[k] for k in ('backend', 'precision', 'int8_calibration')} == {
        k: before[k] for k in ('backend', 'precision', 'int8_calibration')}


def test_start_up_line_says_whether_the_network_was_made_or_read_from_the_cache():
    def backend(precision, cached, prepare_s=12.3):
        return types.SimpleNamespace(
            name='openvino', precision=precision, device='cpu', cached=cached,
            prepare_s=prepare_s, config=types.SimpleNamespace(metres_per_pixel=0.002),
            choice=types.SimpleNamespace(reason='int8 multiply-adds (AVX2, no VNNI)'))

    line = GraspDetectorNode._describe_backend(backend('int8', cached=False))
    assert line.startswith('openvino int8 on cpu (int8 multiply-adds (AVX2, no VNNI))')
    assert 'exported and quantised on this start in 12.3 s' in line
    assert 'int8 network loaded from the cache' in GraspDetectorNode._describe_backend(
        backend('int8', cached=True))
    fp32 = GraspDetectorNode._describe_backend(backend('fp32', cached=False, prepare_s=1.0))
    assert 'exported on this start in 1.0 s' in fp32 and 'quantised' not in fp32
    assert '2.000 mm per network pixel' in fp32


_FREEZE_SCRIPT = """
import gc
import weakref

from grasp_fcn_ros.node import freeze_heap


class Cycle:
    pass


imported = len(gc.get_objects())
first = Cycle()
first.self = first
ref = weakref.ref(first)
freeze_heap()
# what the imports made is frozen: full collections no longer scan it
assert gc.get_freeze_count() > imported // 2, (gc.get_freeze_count(), imported)
assert len(gc.get_objects()) < imported // 10, (len(gc.get_objects()), imported)
# a frozen cycle dropped later stays until a refreeze (a model change) collects it
del first
gc.collect()
assert ref() is not None
freeze_heap(refreeze=True)
assert ref() is None
assert gc.get_freeze_count() > 0
print('ok')
"""


def test_freeze_heap_exempts_the_start_up_objects_and_a_refreeze_collects_dropped_ones():
    # in a child process: freezing pytest's own heap would outlive this test
    result = subprocess.run([sys.executable, '-c', _FREEZE_SCRIPT], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('ok')


#: Re-subscriptions the churn test makes: rclpy's executor crashed within a few hundred when
#: the image subscriptions carried event handlers.
CHURN_CYCLES = 1500


def test_re_subscribing_while_a_multi_threaded_executor_spins_keeps_the_node_up(
        client, random_model_path, monkeypatch):
    # the node's own executor and publisher-matching timer, with the timer at 1 ms and every
    # check asking for the other reliability: the depth subscription is destroyed and made
    # again while the executor's main thread builds its wait set
    monkeypatch.setattr(node_module, 'PUBLISHER_QOS_CHECK_PERIOD_S', 0.001)
    node = GraspDetectorNode(context=client.context, namespace='/churn', parameter_overrides=[
        Parameter('model_path', value=random_model_path), Parameter('device', value='cpu')])
    reliabilities = itertools.cycle(('best_effort', 'reliable'))
    cycles = []

    def alternate(offered):
        cycles.append(None)
        return next(reliabilities)

    node._image_reliability = alternate
    executor = MultiThreadedExecutor(num_threads=node_module.EXECUTOR_THREADS,
                                     context=client.context)
    executor.add_node(node)
    stop, errors = threading.Event(), []

    def spin():
        try:
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.05)
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            errors.append(exc)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while len(cycles) < CHURN_CYCLES and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        spinner.join(10.0)
        executor.remove_node(node)
        executor.shutdown()
        node.destroy_node()
    assert not errors, errors
    assert len(cycles) >= CHURN_CYCLES, len(cycles)


def test_the_node_asks_for_the_backend_as_given_and_says_when_it_replays_a_cuda_graph(
        monkeypatch):
    from grasp_fcn_ros.core.runtime import RuntimeChoice

    calls = []
    monkeypatch.setattr(node_module, 'create_backend',
                        lambda path, *request, **options: calls.append((request, options))
                        or types.SimpleNamespace())
    node_module.build_backend(dict(node_module.DEFAULTS, backend='auto', device='cpu',
                                   precision='auto', test_time_mirror=False))
    (request, options), = calls
    assert request == ('auto', 'cpu', 'auto')  # not resolved: auto's own rules apply
    assert 'cuda_graphs' not in options
    gpu_backend = types.SimpleNamespace(
        name='torch', precision='fp16', device='cuda',
        choice=RuntimeChoice('torch', 'cuda', 'fp16', 'a GPU'),
        plan=types.SimpleNamespace(cuda_graphs=True),
        config=types.SimpleNamespace(metres_per_pixel=0.002))
    line = GraspDetectorNode._describe_backend(gpu_backend)
    assert line.startswith('torch fp16 on cuda, replaying a CUDA graph (a GPU)'), line


def test_the_backend_is_warmed_up_before_the_first_frame_and_the_log_says_so(monkeypatch):
    class Backend:
        name, precision, device = 'torch', 'fp32', 'cpu'
        config = types.SimpleNamespace(metres_per_pixel=0.002, width_scale=1.0, input_size=8,
                                       max_width_px=150.0)

        def __init__(self):
            self.warmups, self.calls = 0, []

        def warmup(self, runs=2):
            self.warmups += 1

        def predict(self, batch):
            self.calls.append(batch.shape)
            return np.zeros((len(batch), 4, 8, 8), np.float32)

    built = []
    monkeypatch.setattr(node_module, 'create_backend',
                        lambda *request, **options: built.append(Backend()) or built[-1])
    values = dict(node_module.DEFAULTS, backend='torch', device='cpu', precision='fp32')
    backend = node_module.build_backend(dict(values, test_time_mirror=False))
    assert backend.warmups == 1 and backend.warmup_s >= 0.0
    assert 'warmed up in' in GraspDetectorNode._describe_backend(backend)
    # with the mirrored view the warm-up runs the two-view batch the network will get
    mirrored = node_module.build_backend(dict(values, test_time_mirror=True))
    assert built[-1].calls and set(built[-1].calls) == {(2, 1, 8, 8)}
    assert 'warmed up in' in GraspDetectorNode._describe_backend(mirrored)
