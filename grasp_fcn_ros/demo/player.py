"""The demo's player: the real node in its own process and an rclpy node that plays frames to
it and collects its answers.

:func:`node_session` starts ``python -m grasp_fcn_ros.node`` with the demo's parameters file,
waits until it connects, and stops it with SIGINT at the end (it must exit cleanly).
:class:`Player` publishes each frame's depth, camera_info and colour (one stamp, one frame_id)
and receives ``~/grasps``, ``~/grasp_details``, ``~/best_grasp`` and ``~/latency``.
"""

import contextlib
from dataclasses import replace
import os
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np

FRAME_ID = 'camera_depth_optical_frame'
#: Topics the demo publishes on; the node's relative inputs are remapped to them.
DEPTH_TOPIC = '/grasp_fcn_demo/depth/image'
CAMERA_INFO_TOPIC = '/grasp_fcn_demo/depth/camera_info'
COLOR_TOPIC = '/grasp_fcn_demo/color/image'
NODE_NAME = 'grasp_detector'
#: Seconds to wait for the node to come up (model load) and for it to stop after SIGINT.
STARTUP_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 20.0
#: Seconds without an answer after which a frame is published again, at least: the very first
#: depth frame can reach the node before its (best-effort) camera_info subscription has
#: matched the demo's publisher, and the node then skips it.
RESEND_AFTER_S = 3.0
#: ... and at least this many times the slowest round trip seen so far.
RESEND_LATENCY_FACTOR = 4.0
#: Period of camera_info, seconds: like a camera driver, the demo keeps publishing it.
CAMERA_INFO_PERIOD_S = 0.1


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def node_parameters(params_file, model_path):
    """The node's parameter values: its defaults, what the params file sets for it (read as
    rclpy reads it for a node named :data:`NODE_NAME`), then ``model_path``."""
    from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

    from ..node import DEFAULTS

    values = dict(DEFAULTS)
    from_file = parameter_dict_from_yaml_file(params_file, use_wildcard=True,
                                              target_nodes=[f'/{NODE_NAME}'])
    values.update({name: parameter_value_to_python(msg.value)
                   for name, msg in from_file.items() if name in values})
    values['model_path'] = model_path
    return values


def demo_intrinsics(width, height):
    """The demo camera: :data:`~grasp_fcn_ros.core.geometry.CORNELL_INTRINSICS` (the Kinect
    approximation of the Cornell frames) for an image of ``width`` x ``height`` pixels."""
    from ..core.geometry import CORNELL_INTRINSICS

    return replace(CORNELL_INTRINSICS, width=int(width), height=int(height))


def sent_depth(depth_m, encoding, depth_scale):
    """What the node decodes from the published image (the encoding's rounding and invalid
    values included), metres."""
    from ..core.depth import decode_depth, encode_depth

    pixels = encode_depth(depth_m, encoding, depth_scale)
    height, width = pixels.shape
    return decode_depth(pixels.tobytes(), height, width, encoding, pixels.strides[0], False,
                        depth_scale)


def node_grasps(details, intrinsics):
    """The node's grasps as core types: ``(grasps_2d, grasps_3d)`` from ``~/grasp_details``.

    The width in pixels is recovered from the width in metres at the grasp's depth (the
    inverse of the core's projection, exact for these intrinsics).
    """
    from ..core.grasp import Grasp2D
    from ..core.projection import Grasp3D

    grasps_2d, grasps_3d = [], []
    for p in details:
        angle, z = float(p['angle']), float(p['z'])
        per_metre = z * np.hypot(np.cos(angle) / intrinsics.fx, np.sin(angle) / intrinsics.fy)
        width_px = float(p['width']) / per_metre if per_metre > 0 else 0.0
        grasps_2d.append(Grasp2D(float(p['u']), float(p['v']), angle, width_px,
                                 float(p['quality'])))
        grasps_3d.append(Grasp3D(np.array([p['x'], p['y'], p['z']], dtype=np.float64),
                                 np.array([p['qx'], p['qy'], p['qz'], p['qw']], np.float64),
                                 float(p['width']), float(p['quality']), angle,
                                 float(p['u']), float(p['v']), z))
    return grasps_2d, grasps_3d


def _check(condition, text):
    if not condition:
        raise DemoError(text)


def check_answer(name, answer, grasps_3d):
    """The node's three outputs of a frame must tell the same story."""
    pose_array, best = answer['grasps'], answer['best']
    _check(len(pose_array.poses) == len(grasps_3d), f'{name}: ~/grasps has '
           f'{len(pose_array.poses)} poses but ~/grasp_details {len(grasps_3d)} points')
    for pose, g in zip(pose_array.poses, grasps_3d):
        _check(np.allclose([pose.position.x, pose.position.y, pose.position.z], g.position_m,
                           atol=1e-5), f'{name}: ~/grasps and ~/grasp_details disagree')
    if best is not None:
        p = best.pose.position
        _check(np.allclose([p.x, p.y, p.z], grasps_3d[0].position_m, atol=1e-5),
               f'{name}: ~/best_grasp is not the first of ~/grasps')
    _check(pose_array.header.frame_id == FRAME_ID,
           f"{name}: grasps in frame '{pose_array.header.frame_id}', not '{FRAME_ID}'")


def start_node(params_file, model_path, log_path, device):
    """Start the real node (``python -m grasp_fcn_ros.node``) with its output in a log file.

    Its image subscriptions are made reliable (the demo publishes reliably): a best-effort
    640x480 frame is larger than what the middleware delivers whole between processes.
    """
    from ..node import PARAMETERS
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (package_parent, env.get('PYTHONPATH')) if p)
    env['PYTHONUNBUFFERED'] = '1'
    command = [sys.executable, '-m', 'grasp_fcn_ros.node', '--ros-args',
               '--params-file', params_file,
               '-p', f'model_path:={model_path}',
               '-r', f'depth:={DEPTH_TOPIC}', '-r', f'camera_info:={CAMERA_INFO_TOPIC}',
               '-r', f'color:={COLOR_TOPIC}']
    if device:
        command += ['-p', f'device:={device}']
    if 'image_reliability' in PARAMETERS:
        command += ['-p', 'image_reliability:=reliable']
    log = open(log_path, 'w')
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()
    return process


def log_tail(log_path, lines=25):
    try:
        with open(log_path) as stream:
            return ''.join(stream.readlines()[-lines:])
    except OSError:
        return ''


def stop_node(process, log_path):
    """SIGINT, then wait; returns ``(clean, text)``."""
    if process.poll() is None:  # a Ctrl-C in the terminal may have reached it already
        process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False, f'the node ignored SIGINT for {SHUTDOWN_TIMEOUT_S:.0f} s and was killed'
    text = log_tail(log_path, 200)
    if code != 0:
        return False, f'the node exited with code {code} after SIGINT'
    if 'Traceback' in text:
        return False, 'the node exited with code 0 but logged a traceback'
    return True, 'the node stopped cleanly on SIGINT (exit code 0)'


@contextlib.contextmanager
def node_session(params_file, model_path, log_path, device):
    """The node started and connected to a :class:`Player`, for the ``with`` block.

    On the way out the player is closed, rclpy shut down and the node stopped with SIGINT
    (:func:`stop_node`, whose verdict is printed).

    :raises DemoError: when the node does not connect, or does not stop cleanly.
    """
    import rclpy

    rclpy.init(args=[])
    process = start_node(params_file, model_path, log_path, device)
    player = None
    try:
        player = Player(process, log_path)
        started = time.monotonic()
        player.wait_for_node(STARTUP_TIMEOUT_S)
        print(f"node '{NODE_NAME}' (pid {process.pid}) connected after "
              f'{time.monotonic() - started:.1f} s; log: {log_path}')
        yield player
    finally:
        if player is not None:
            player.close()
        rclpy.try_shutdown()
        clean, text = stop_node(process, log_path)
        print(text)
    if not clean:
        raise DemoError(f'{text}; its log ends with:\n{log_tail(log_path)}')


class PlayedFrame(NamedTuple):
    """One frame played to the node (see :meth:`Player.play_frame`)."""

    #: The header the frame was published with (stamp and frame_id).
    header: object
    #: The camera the frame was published with.
    intrinsics: object
    #: What the node answered (see :meth:`Player.play`).
    answer: dict
    #: The node's grasps as core types.
    grasps_2d: list
    grasps_3d: list


class Player:
    """Publishes frames to the node and collects its answers (an rclpy node of the demo)."""

    def __init__(self, process, log_path):
        from geometry_msgs.msg import PoseArray, PoseStamped
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.process, self.log_path = process, log_path
        self.node = Node('grasp_fcn_demo')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._rclpy = rclpy
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST, depth=10)
        self.depth_pub = self.node.create_publisher(Image, DEPTH_TOPIC, qos)
        self.info_pub = self.node.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, qos)
        self.color_pub = self.node.create_publisher(Image, COLOR_TOPIC, qos)
        self.received = {'grasps': [], 'details': [], 'best': [], 'latency': []}
        self.slowest_s = 0.0
        self.camera_info = None
        self.info_timer = self.node.create_timer(CAMERA_INFO_PERIOD_S, self._publish_info)
        base = f'/{NODE_NAME}'
        self.subs = [
            self.node.create_subscription(PoseArray, f'{base}/grasps',
                                          self._store('grasps'), qos),
            self.node.create_subscription(PointCloud2, f'{base}/grasp_details',
                                          self._store('details'), qos),
            self.node.create_subscription(PoseStamped, f'{base}/best_grasp',
                                          self._store('best'), qos),
            self.node.create_subscription(PointCloud2, f'{base}/latency',
                                          self._store('latency'), qos),
        ]

    def _publish_info(self):
        if self.camera_info is not None:
            self.info_pub.publish(self.camera_info)

    def _store(self, key):
        def callback(msg):
            self.received[key].append((time.perf_counter(), msg))
        return callback

    def spin_until(self, condition, timeout_s, what):
        """Spin until ``condition()`` holds; raise DemoError on timeout or if the node dies."""
        from ..spinning import spin_until

        exited = self.process.poll
        spin_until(self.executor, lambda: condition() or exited() is not None, timeout_s)
        if condition():
            return
        if exited() is not None:
            raise DemoError(f'the node exited (code {self.process.returncode}) while '
                            f'waiting for {what}; its log ends with:\n'
                            f'{log_tail(self.log_path)}')
        raise DemoError(f'timed out after {timeout_s:.0f} s waiting for {what}')

    def wait_for_node(self, timeout_s):
        """Wait until the node's subscriptions and publishers match the demo's (colour is not
        among them: the node subscribes to it only while its debug image is watched)."""
        pubs = (self.depth_pub, self.info_pub)
        self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                        and all(s.get_publisher_count() > 0 for s in self.subs),
                        timeout_s, f"the '{NODE_NAME}' node to connect (model loading)")

    def _by_stamp(self, key, stamp):
        for arrived, msg in self.received[key]:
            if (msg.header.stamp.sec, msg.header.stamp.nanosec) == stamp:
                return arrived, msg
        return None

    def play(self, depth_msg, info_msg, color_msg, timeout_s):
        """Publish one frame and wait for the node's answer with the same stamp.

        The frame is published again when no answer comes within the resend interval (at
        least :data:`RESEND_AFTER_S`, and :data:`RESEND_LATENCY_FACTOR` times the slowest
        round trip so far); answers are matched by stamp, so a late duplicate is ignored.

        :returns: dict with ``grasps`` (PoseArray), ``details`` (PointCloud2), ``best``
            (PoseStamped or None), ``timings_ms`` (the node's ``~/latency``, may be empty),
            ``round_trip_ms`` and ``sends``.
        """
        from ..ros_conversions import latency_from_message

        stamp = (depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec)
        for key in self.received:
            self.received[key].clear()
        deadline = time.monotonic() + timeout_s
        interval = max(RESEND_AFTER_S, RESEND_LATENCY_FACTOR * self.slowest_s)
        sends = []

        def answered():
            return (self._by_stamp('grasps', stamp) is not None
                    and self._by_stamp('details', stamp) is not None)

        while not answered():
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f'no answer from the node within {timeout_s:.0f} s '
                                f'({len(sends)} sends); its log ends with:\n'
                                f'{log_tail(self.log_path)}')
            # camera_info and colour first: the node uses the newest of each when the depth
            # frame comes in. camera_info also goes out periodically (see _publish_info).
            self.camera_info = info_msg
            self.info_pub.publish(info_msg)
            if color_msg is not None:
                self.color_pub.publish(color_msg)
            sends.append(time.perf_counter())
            self.depth_pub.publish(depth_msg)
            try:
                self.spin_until(answered, min(left, interval), 'the grasps')
            except DemoError:
                if self.process.poll() is not None:
                    raise
        arrived, grasps = self._by_stamp('grasps', stamp)
        _, details = self._by_stamp('details', stamp)
        round_trip_s = arrived - max(t for t in sends if t <= arrived)
        self.slowest_s = max(self.slowest_s, round_trip_s)
        best = None
        if grasps.poses:
            self.spin_until(lambda: self._by_stamp('best', stamp) is not None, 10.0,
                            '~/best_grasp')
            best = self._by_stamp('best', stamp)[1]
        timings = {}
        try:
            self.spin_until(lambda: bool(self.received['latency']), 5.0, '~/latency')
            # ~/latency has no header: take the message that came closest to the grasps.
            _, latency_msg = min(self.received['latency'],
                                 key=lambda item: abs(item[0] - arrived))
            timings = latency_from_message(latency_msg)
        except DemoError:
            if self.process.poll() is not None:
                raise
        return {'grasps': grasps, 'details': details, 'best': best, 'timings_ms': timings,
                'round_trip_ms': round_trip_s * 1e3, 'sends': len(sends)}

    def play_frame(self, name, depth_m, rgb, encoding, depth_scale, timeout_s):
        """Publish one frame (depth as ``encoding``, camera_info and colour, one header), wait
        for the node's answer and check that its outputs agree with each other.

        :param rgb: colour image, or None.
        :returns: :class:`PlayedFrame`.
        """
        from ..ros_conversions import (
            camera_info_from_intrinsics,
            cloud_to_array,
            image_from_depth,
            image_from_rgb,
            make_header,
        )

        height, width = depth_m.shape
        header = make_header(self.node.get_clock().now().to_msg(), FRAME_ID)
        intrinsics = demo_intrinsics(width, height)
        answer = self.play(image_from_depth(depth_m, header, encoding, depth_scale),
                           camera_info_from_intrinsics(intrinsics, header),
                           None if rgb is None else image_from_rgb(rgb, header), timeout_s)
        grasps_2d, grasps_3d = node_grasps(cloud_to_array(answer['details']), intrinsics)
        check_answer(name, answer, grasps_3d)
        return PlayedFrame(header, intrinsics, answer, grasps_2d, grasps_3d)

    def close(self):
        self.executor.remove_node(self.node)
        self.node.destroy_node()
