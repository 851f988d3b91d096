"""The demo: the real ``grasp_detector`` node on bundled Cornell frames, over ROS 2.

Starts ``python -m grasp_fcn_ros.node`` with ``config/detector.yaml`` as a separate process,
publishes each frame's depth, camera_info and colour (one stamp, one frame_id), receives
``~/grasps``, ``~/grasp_details`` and ``~/best_grasp``, and writes per frame
``<output>/<frame>.png`` (depth, Q map, angle map, and the grasps the node published) and
``<output>/<frame>.json``. The Q and angle panels come from the same core detector run here
offline on the same depth, which also checks that node and library agree. The node is then
stopped with SIGINT and must exit cleanly.
"""

import argparse
from dataclasses import replace
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from .resources import default_model_path, share_directory

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
#: Period of camera_info, seconds: like a camera driver, the demo keeps publishing it.
CAMERA_INFO_PERIOD_S = 0.1
#: ... and at least this many times the slowest round trip seen so far.
RESEND_LATENCY_FACTOR = 4.0
#: Tolerances of the node-versus-offline comparison.
AGREE_PIXEL_TOL = 0.5
AGREE_QUALITY_TOL = 1e-3
AGREE_POSITION_TOL_M = 1e-3
#: Seed of the untrained checkpoint written when no trained model exists.
UNTRAINED_SEED = 0


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


# --- model --------------------------------------------------------------------------------------

def describe_model(path):
    """``(trained, text)``: whether a checkpoint holds trained weights, and its provenance."""
    from .core.model import load_checkpoint

    meta = dict(load_checkpoint(path).get('meta') or {})
    train = meta.get('train') if isinstance(meta.get('train'), dict) else {}
    trained = bool(meta['trained']) if 'trained' in meta else bool(train or meta.get('epoch'))
    if not trained:
        return False, f'{path}: UNTRAINED weights (random initialisation)'
    parts = []
    for key in ('provenance', 'description', 'note'):
        if isinstance(meta.get(key), str):
            parts.append(meta[key])
    if meta.get('epoch') is not None:
        total = train.get('epochs')
        done = int(meta['epoch']) + 1  # meta counts epochs from 0
        parts.append(f'{done} of {total} epochs' if total else f'{done} epochs')
    if train.get('dataset'):
        parts.append(f"data {train['dataset']}")
    keys = ('split', 'folds', 'fold') if (train.get('folds') or 0) >= 2 else ()
    for key in keys + ('batch_size', 'lr', 'lr_schedule', 'seed'):
        if train.get(key) not in (None, ''):
            parts.append(f'{key} {train[key]}')
    if isinstance(meta.get('loss'), (int, float)):
        parts.append(f"train loss {meta['loss']:.4f}")
    accuracy = meta.get('val_accuracy')
    if isinstance(accuracy, (int, float)) and np.isfinite(accuracy):
        parts.append(f'validation accuracy {100 * accuracy:.1f} %')
    return True, f"{path}: TRAINED ({', '.join(parts) or 'no provenance in checkpoint meta'})"


def untrained_checkpoint(folder):
    """Write a seeded random-weight checkpoint of the real architecture; returns its path."""
    from .core.model import save_random_checkpoint

    return save_random_checkpoint(
        os.path.join(folder, 'untrained.pt'), UNTRAINED_SEED,
        {'seed': UNTRAINED_SEED,
         'note': 'random weights written by the demo; no trained model found'})


# --- frames and the node's settings --------------------------------------------------------------

def load_frames(folder):
    """The demo frames: list of ``(name, depth_m, rgb or None)`` in name order."""
    from .core.depth import read_depth_image
    from .training.dataset import find_samples

    samples, _ = find_samples(folder)
    if not samples:
        raise DemoError(f'no frames (<name>d.tiff with <name>cpos.txt) in {folder}')
    return [(sample.name, read_depth_image(sample.depth_path), sample.load_color())
            for sample in samples]


def node_parameters(params_file, model_path):
    """The node's parameter values: its defaults, what the params file sets for it (read as
    rclpy reads it for a node named :data:`NODE_NAME`), then ``model_path``."""
    from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

    from .node import DEFAULTS

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
    from .core.geometry import CORNELL_INTRINSICS

    return replace(CORNELL_INTRINSICS, width=int(width), height=int(height))


def sent_depth(depth_m, encoding, depth_scale):
    """What the node decodes from the published image (the encoding's rounding and invalid
    values included), metres."""
    from .core.depth import decode_depth, encode_depth

    pixels = encode_depth(depth_m, encoding, depth_scale)
    height, width = pixels.shape
    return decode_depth(pixels.tobytes(), height, width, encoding, pixels.strides[0], False,
                        depth_scale)


def node_grasps(details, intrinsics):
    """The node's grasps as core types: ``(grasps_2d, grasps_3d)`` from ``~/grasp_details``.

    The width in pixels is recovered from the width in metres at the grasp's depth (the
    inverse of the core's projection, exact for these intrinsics).
    """
    from .core.grasp import Grasp2D
    from .core.projection import Grasp3D

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


def compare(node_3d, offline_3d):
    """``(agree, reason)``: does the node publish what the library computes on the same depth?"""
    if len(node_3d) != len(offline_3d):
        return False, f'{len(node_3d)} grasps from the node, {len(offline_3d)} offline'
    for i, (a, b) in enumerate(zip(node_3d, offline_3d)):
        if max(abs(a.u - b.u), abs(a.v - b.v)) > AGREE_PIXEL_TOL:
            return False, f'grasp {i + 1}: node at ({a.u:.1f}, {a.v:.1f}) px, offline at ' \
                          f'({b.u:.1f}, {b.v:.1f}) px'
        if abs(a.quality - b.quality) > AGREE_QUALITY_TOL:
            return False, f'grasp {i + 1}: quality {a.quality:.4f} vs {b.quality:.4f}'
        if np.linalg.norm(np.asarray(a.position_m) - b.position_m) > AGREE_POSITION_TOL_M:
            return False, f'grasp {i + 1}: positions differ by more than 1 mm'
    return True, 'same grasps'


# --- the node process ----------------------------------------------------------------------------

def start_node(params_file, model_path, log_path, device):
    """Start the real node (``python -m grasp_fcn_ros.node``) with its output in a log file.

    Its image subscriptions are made reliable (the demo publishes reliably): a best-effort
    640x480 frame is larger than what the middleware delivers whole between processes.
    """
    from .node import PARAMETERS
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


# --- the ROS 2 side of the demo ---------------------------------------------------------------

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
        from .spinning import spin_until

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
        from .ros_conversions import latency_from_message

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

    def close(self):
        self.executor.remove_node(self.node)
        self.node.destroy_node()


# --- main ---------------------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog='demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--output', default=os.path.join('output', 'demo'),
                        help='folder for the figures, JSON files and the node log '
                             '(default: output/demo)')
    parser.add_argument('--model', default=None,
                        help='checkpoint (default: the packaged models/grasp_fcn_cornell.pt; '
                             'when it is absent, seeded UNTRAINED random weights)')
    parser.add_argument('--frames-dir', default=os.path.join(share_directory(), 'demo', 'frames'),
                        help='Cornell-layout frames to play (default: the bundled ones)')
    parser.add_argument('--encoding', choices=('32FC1', '16UC1'), default='32FC1',
                        help='depth encoding published (metres, or millimetres)')
    parser.add_argument('--device', default='',
                        help="node and offline inference device (default: the params file's)")
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='seconds to wait for the node per frame')
    return parser


def _check(condition, text):
    if not condition:
        raise DemoError(text)


def resolve_model(model, output):
    """The checkpoint to run: ``model``, else the packaged one, else seeded random weights.

    :returns: ``(path, trained, provenance text)``.
    """
    if model is None:
        model = default_model_path()
        if not os.path.isfile(model):
            print(f'no trained model at {model}')
            model = untrained_checkpoint(output)
            print(f'using UNTRAINED weights: a seeded random checkpoint written to {model}; '
                  'the grasps below mean nothing')
    elif not os.path.isfile(model):
        raise DemoError(f'model file not found: {model}')
    trained, provenance = describe_model(model)
    return os.path.abspath(model), trained, provenance


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


def summary_line(name, grasps_3d, answer, offline_detection, agree, reason, q_threshold):
    """One line per frame: grasps, the best one in metres, node latency, agreement."""
    if grasps_3d:
        g = grasps_3d[0]
        x, y, z = g.position_m
        found = (f'{len(grasps_3d)} grasps, best q={g.quality:.2f} at '
                 f'({x:+.3f}, {y:+.3f}, {z:.3f}) m, width {100 * g.width_m:.1f} cm')
    else:
        peak = float(np.max(offline_detection.maps.quality))
        found = f'0 grasps (none with Q >= q_threshold {q_threshold}; max Q {peak:.2f})'
    timings = answer['timings_ms']
    if 'total' in timings:
        latency = (f"node latency {timings['total']:.0f} ms receive-to-publish (inference "
                   f"{timings.get('inference', float('nan')):.0f} ms), "
                   f"{answer['round_trip_ms']:.0f} ms round trip")
    else:
        latency = f"node latency {answer['round_trip_ms']:.0f} ms round trip"
    verdict = 'node == offline' if agree else f'node != offline: {reason}'
    if answer['sends'] > 1:
        verdict += f" (frame sent {answer['sends']} times)"
    return f'{name}: {found}; {latency}; {verdict}'


def play_frame(player, offline, values, args, frame, model_info):
    """Play one frame to the node, check its answer, write the figure and the JSON file.

    :returns: ``(summary line, agree, reason)``.
    """
    from .ros_conversions import (
        camera_info_from_intrinsics,
        cloud_to_array,
        image_from_depth,
        image_from_rgb,
        make_header,
    )
    from .visualize import detection_to_json, save_detection_figure

    name, depth_m, rgb = frame
    height, width = depth_m.shape
    depth_scale = float(values['depth_scale'])
    header = make_header(player.node.get_clock().now().to_msg(), FRAME_ID)
    intrinsics = demo_intrinsics(width, height)
    answer = player.play(image_from_depth(depth_m, header, args.encoding, depth_scale),
                         camera_info_from_intrinsics(intrinsics, header),
                         None if rgb is None else image_from_rgb(rgb, header), args.timeout)
    grasps_2d, grasps_3d = node_grasps(cloud_to_array(answer['details']), intrinsics)
    check_answer(name, answer, grasps_3d)

    mine = offline.detect(sent_depth(depth_m, args.encoding, depth_scale), intrinsics)
    agree, reason = compare(grasps_3d, mine.grasps_3d)
    shown = replace(mine, grasps_2d=grasps_2d, grasps_3d=grasps_3d,
                    timings_ms=answer['timings_ms'])
    untrained = '' if model_info['trained'] else ' (UNTRAINED weights)'
    save_detection_figure(os.path.join(args.output, f'{name}.png'), depth_m, shown, rgb,
                          title=f'{name}: grasps published by the {NODE_NAME} node{untrained}; '
                                'Q and angle maps offline')
    record = detection_to_json(shown)
    offline_record = detection_to_json(mine)
    record.update({
        'frame': name, 'frame_id': answer['grasps'].header.frame_id,
        'stamp': {'sec': header.stamp.sec, 'nanosec': header.stamp.nanosec},
        'depth_encoding': args.encoding,
        'intrinsics': {'fx': intrinsics.fx, 'fy': intrinsics.fy, 'cx': intrinsics.cx,
                       'cy': intrinsics.cy, 'width': width, 'height': height},
        'model': model_info,
        'round_trip_ms': round(answer['round_trip_ms'], 3),
        'sends': answer['sends'],
        'offline': {'agrees_with_node': agree, 'detail': reason,
                    'grasps': offline_record['grasps'],
                    'timings_ms': offline_record['timings_ms']},
    })
    with open(os.path.join(args.output, f'{name}.json'), 'w') as stream:
        json.dump(record, stream, indent=2)
    line = summary_line(name, grasps_3d, answer, mine, agree, reason, values['q_threshold'])
    return line, agree, reason


def run(args):
    os.makedirs(args.output, exist_ok=True)
    model, trained, provenance = resolve_model(args.model, args.output)
    print(f'model: {provenance}')
    model_info = {'path': model, 'trained': trained, 'provenance': provenance}

    frames = load_frames(args.frames_dir)
    params_file = os.path.join(share_directory(), 'config', 'detector.yaml')
    values = node_parameters(params_file, model)
    if args.device:
        values['device'] = args.device
    # Discovery stays on this machine; a domain of our own unless the caller chose one.
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(int.from_bytes(os.urandom(1), 'little') % 100 + 1))
    print(f'{len(frames)} frames from {args.frames_dir}; depth as {args.encoding}; '
          f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, discovery "
          f"{os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}")

    from .core.backends import create_backend
    from .core.detector import GraspDetector
    from .node import detector_config

    offline = GraspDetector(create_backend(model, values['backend'], values['device']),
                            detector_config(values))

    import rclpy

    log_path = os.path.join(args.output, 'node.log')
    rclpy.init(args=[])
    process = start_node(params_file, model, log_path, args.device)
    player = None
    failures = []
    try:
        player = Player(process, log_path)
        started = time.monotonic()
        player.wait_for_node(STARTUP_TIMEOUT_S)
        print(f"node '{NODE_NAME}' (pid {process.pid}) connected after "
              f'{time.monotonic() - started:.1f} s; log: {log_path}')
        for frame in frames:
            line, agree, reason = play_frame(player, offline, values, args, frame, model_info)
            print(line)
            if not agree:
                failures.append(f'{frame[0]}: {reason}')
        print(f'wrote {len(frames)} figures and JSON files to {args.output}')
    finally:
        if player is not None:
            player.close()
        rclpy.try_shutdown()
        clean, text = stop_node(process, log_path)
        print(text)
    if not clean:
        raise DemoError(f'{text}; its log ends with:\n{log_tail(log_path)}')
    if failures:
        print('node and offline detector disagree on: ' + '; '.join(failures))
    else:
        print('node and offline detector agree on every frame')
    if not trained:
        print('NOTE: these grasps come from UNTRAINED weights; train a model '
              '(grasp-fcn train) and put it at models/grasp_fcn_cornell.pt')
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except DemoError as exc:
        print(f'demo: error: {exc}', file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f'demo: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
