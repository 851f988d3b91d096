"""``grasp-fcn bench --ros``: the real node (``python -m grasp_fcn_ros.node``) in its own process,
timed from outside over ROS 2.

The frames are published at ``--rate`` Hz; what a subscriber sees is measured: round-trip latency
(depth stamp to receipt of ``~/grasps``), the node's own receive-to-publish latency (its
``~/latency`` topic) and dropped frames.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from ..resources import fastdds_shm_profile_path
from ..spinning import spin_until
from .common import (
    ENCODING,
    FRAME_ID,
    intrinsics_for,
    machine_info,
    summarise,
)

#: Seconds the node gets to start (model loading, export on first use).
NODE_START_TIMEOUT_S = 120.0
#: Seconds to wait for the last results after the last frame is published.
DRAIN_TIMEOUT_S = 5.0
#: A warm-up frame without an answer after WARMUP_WAIT_S is sent again, at most this often.
WARMUP_ATTEMPTS = 10
WARMUP_WAIT_S = 5.0


def ros_environment(base=None, transport='default'):
    """The environment of the benchmark's ROS 2 processes: discovery kept on this machine and a
    domain of its own unless ``ROS_DOMAIN_ID`` is set.

    :param transport: ``default`` (the RMW's own), or ``shm``: with Fast DDS, the packaged
        ``config/fastdds_shm.xml`` (unless a profile file is set already).
    :returns: ``(env, note)``; the note says what was changed, or None.
    """
    env = dict(os.environ if base is None else base)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.pop('ROS_LOCALHOST_ONLY', None)
    env.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    note = None
    if transport == 'shm':
        rmw = env.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
        if not rmw.startswith('rmw_fastrtps'):
            note = f'--transport shm applies to Fast DDS only; {rmw} kept as configured'
        elif env.get('FASTDDS_DEFAULT_PROFILES_FILE') or env.get(
                'FASTRTPS_DEFAULT_PROFILES_FILE'):
            note = '--transport shm: a Fast DDS profile file is set already and was kept'
        else:
            path = fastdds_shm_profile_path()
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = path
            note = f'Fast DDS over shared memory only, profile {path} (--transport shm)'
    return env, note


def node_command(model_path, backend, device, extra_params=None):
    """Command line that starts the detector node with a runtime: a backend name, or
    ``backend:precision``."""
    backend, _, precision = backend.partition(':')
    params = {'model_path': model_path, 'backend': backend, 'device': device,
              'precision': precision or ('auto' if backend == 'auto' else 'fp32')}
    params.update(extra_params or {})
    command = [sys.executable, '-m', 'grasp_fcn_ros.node', '--ros-args',
               '-r', '__node:=grasp_detector', '-r', 'depth:=/grasp_bench/depth',
               '-r', 'camera_info:=/grasp_bench/camera_info']
    for name, value in params.items():
        command += ['-p', f'{name}:={value}']
    return command


class _Publisher:
    """The benchmark's side over ROS 2: publishes frames, collects results."""

    def __init__(self, frames, context=None):
        from geometry_msgs.msg import PoseArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import Header

        from ..ros_conversions import (
            camera_info_from_intrinsics,
            image_from_depth,
            latency_from_message,
        )

        self.node = Node('grasp_bench', context=context)
        self.latency_from_message = latency_from_message
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.depth_pub = self.node.create_publisher(Image, '/grasp_bench/depth', reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, '/grasp_bench/camera_info',
                                                   reliable)
        self.sent = {}
        self.round_trip_ms = {}
        self.node_latency = []
        self.node.create_subscription(PoseArray, '/grasp_detector/grasps', self._on_grasps,
                                      reliable)
        self.node.create_subscription(PointCloud2, '/grasp_detector/latency',
                                      self._on_latency, reliable)
        self.images, self.infos = [], []
        header = Header(frame_id=FRAME_ID)
        for depth_m in frames:
            self.images.append(image_from_depth(depth_m, header, ENCODING))
            self.infos.append(camera_info_from_intrinsics(intrinsics_for(depth_m), header))

    def ready(self):
        """Whether the node subscribes to the depth topic and publishes grasps."""
        return (self.depth_pub.get_subscription_count() > 0
                and self.node.count_publishers('/grasp_detector/grasps') > 0)

    def publish(self, index, frame):
        stamp = self.node.get_clock().now()
        key = (stamp.nanoseconds // 10**9, stamp.nanoseconds % 10**9)
        image, info = self.images[frame], self.infos[frame]
        image.header.stamp = info.header.stamp = stamp.to_msg()
        self.sent[key] = (index, time.perf_counter())
        self.info_pub.publish(info)
        self.depth_pub.publish(image)

    def _on_grasps(self, msg):
        received = time.perf_counter()
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if key in self.sent:
            index, sent = self.sent[key]
            self.round_trip_ms[index] = (received - sent) * 1e3

    def _on_latency(self, msg):
        self.node_latency.append(self.latency_from_message(msg))


def _ros_bench_one(publisher, executor, backend, args, num_frames, warmup):
    """Publish warm-up and timed frames at the rate; returns the backend's summary."""
    period = 1.0 / args.rate
    count = len(publisher.images)
    index = -1
    for i in range(warmup):
        # a frame lost by the transport is sent again: warm-up needs answers, not a rate
        for _ in range(WARMUP_ATTEMPTS):
            index -= 1
            publisher.publish(index, i % count)
            if spin_until(executor, lambda k=index: k in publisher.round_trip_ms,
                           WARMUP_WAIT_S):
                break
    publisher.node_latency.clear()
    start = time.perf_counter()
    for i in range(num_frames):
        target = start + i * period
        spin_until(executor, lambda t=target: time.perf_counter() >= t, period + 1.0)
        publisher.publish(i, i % count)
    # the last frames get as long as a few warm-up frames took, as the node may be busy
    warm = [ms for key, ms in publisher.round_trip_ms.items() if key < 0]
    drain_s = max(DRAIN_TIMEOUT_S, 3e-3 * max(warm, default=0.0))
    spin_until(executor, lambda: all(i in publisher.round_trip_ms for i in range(num_frames)),
                drain_s)
    round_trip = [publisher.round_trip_ms[i] for i in range(num_frames)
                  if i in publisher.round_trip_ms]
    stages = {}
    for sample in publisher.node_latency:
        for stage, value in sample.items():
            stages.setdefault(stage, []).append(value)
    entry = {'backend': backend, 'device': args.device, 'rate_hz': args.rate,
             'published': num_frames, 'received': len(round_trip),
             'processed': len(publisher.node_latency),
             'dropped': num_frames - len(round_trip),
             'round_trip': summarise(round_trip),
             'node_latency': {stage: summarise(v) for stage, v in stages.items()}}
    return entry


def run_ros_bench(args, model_path, frames, backends):
    """``bench --ros``: one node process per runtime (``backend[:precision]``, or ``auto``),
    frames published at ``--rate`` Hz."""
    from ..core.backends import BACKENDS
    from ..core.runtime import runtime_installed

    names = list(BACKENDS) + ['auto'] if backends == ['all'] else backends
    env, transport_note = ros_environment(transport=args.transport)
    # this process's participant needs the same settings as the node's: set them while the
    # benchmark runs, then put the caller's environment back
    keys = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID', 'FASTDDS_DEFAULT_PROFILES_FILE')
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update({key: env[key] for key in keys if key in env})
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    results, notes = {}, [transport_note] if transport_note else []
    try:
        publisher = _Publisher(frames, context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(publisher.node)
        for backend in names:
            if backend != 'auto' and not runtime_installed(backend):
                notes.append(f'{backend}: runtime not installed, skipped')
                continue
            log = tempfile.TemporaryFile(mode='w+')
            threads = {'inference_threads': args.threads} if args.threads else None
            process = subprocess.Popen(node_command(model_path, backend, args.device, threads),
                                       env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            try:
                if not spin_until(executor, lambda: publisher.ready()
                                   or process.poll() is not None, NODE_START_TIMEOUT_S) \
                        or process.poll() is not None:
                    process.terminate()
                    process.wait(timeout=10)
                    log.seek(0)
                    notes.append(f'{backend}: the node did not start: {log.read()[-800:]}')
                    continue
                publisher.sent.clear()
                publisher.round_trip_ms.clear()
                results[backend] = _ros_bench_one(publisher, executor, backend, args,
                                                  args.frames, max(args.warmup, 1))
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                if os.environ.get('GRASP_FCN_BENCH_NODE_LOG'):
                    log.seek(0)
                    sys.stderr.write(log.read())
                log.close()
        executor.shutdown()
        publisher.node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    print(format_ros_table(results))
    for line in notes:
        print(f'note: {line}')
    report = {'mode': 'ros', 'machine': machine_info(),
              'settings': {'frames': args.frames, 'warmup': args.warmup, 'rate_hz': args.rate,
                           'model': args.model, 'encoding': ENCODING, 'holes': args.holes,
                           'invalid_fraction': args.invalid_fraction,
                           'transport': args.transport, 'inference_threads': args.threads,
                           'domain_id': env['ROS_DOMAIN_ID']},
              'notes': notes, 'backends': results}
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(report, stream, indent=2)
        print(f'wrote {args.json}')
    return 0 if results else 1


def format_ros_table(results):
    """Table of the ``--ros`` results: round trip, the node's total latency and, at p50, its
    wait for the worker and its inference."""
    head = (f"{'backend':22s}{'sent':>6s}{'recv':>6s}{'drop':>6s}{'rt p50':>9s}{'rt p99':>9s}"
            f"{'node p50':>10s}{'node p99':>10s}{'wait p50':>10s}{'infer p50':>10s}")
    lines = ['over ROS 2, milliseconds (rt: depth publish to grasps receipt; node: its '
             'receive-to-publish latency; wait: receipt until its worker took the frame)', head,
             '-' * len(head)]

    def ms(value):
        return f'{value:9.1f}' if value is not None else '        -'

    none = {'p50': None, 'p99': None}
    for backend, entry in results.items():
        stages = entry['node_latency']
        total = stages.get('total', none)
        lines.append(f"{backend:22s}{entry['published']:6d}{entry['received']:6d}"
                     f"{entry['dropped']:6d}{ms(entry['round_trip']['p50'])}"
                     f"{ms(entry['round_trip']['p99'])} {ms(total['p50'])} {ms(total['p99'])}"
                     f" {ms(stages.get('wait', none)['p50'])}"
                     f" {ms(stages.get('inference', none)['p50'])}")
    return '\n'.join(lines)
