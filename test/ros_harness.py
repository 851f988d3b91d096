"""Helpers for multi-process ROS 2 tests of the grasp_detector node.

The node runs in its own process (``python -m grasp_fcn_ros.node --ros-args ...``) with its
output captured to a file; the test talks to it through a test-side rclpy node in a private
context. Discovery stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) and each
test module uses its own ``ROS_DOMAIN_ID``. Waits are condition-based with a timeout.
"""

import argparse
import array
import os
import signal
import subprocess
import sys
import time
import zlib

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseArray, PoseStamped
import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters, SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from grasp_fcn_ros.core.geometry import CameraIntrinsics, CORNELL_INTRINSICS
from grasp_fcn_ros.ros_conversions import camera_info_from_intrinsics
from grasp_fcn_ros.spinning import spin_until

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The packaged Fast DDS profile (config/fastdds_shm.xml): shared memory only (nothing leaves
#: the machine) with segments large enough for whole depth images. With the default transports a
#: best-effort subscription loses images over the 512 KiB default segment (a 640x480 16UC1
#: image is 600 KiB): they fall back to fragmented UDP and lose a fragment.
FASTDDS_PROFILE = os.path.join(REPO_ROOT, 'config', 'fastdds_shm.xml')

#: Reliable, keep the last 10: what the test side uses for its publishers and subscribers.
TEST_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                      depth=10)


def unique_domain_id(salt):
    """A ROS domain id in 1..101 derived from this process and a per-module salt."""
    return 1 + (os.getpid() * 7919 + zlib.crc32(salt.encode())) % 101


def use_test_transport():
    """Make rclpy participants created later in this process use :data:`FASTDDS_PROFILE`.

    Fast DDS reads the profile when the first participant of the process is created, so this
    must run before anything in the process initialises rclpy.
    """
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = FASTDDS_PROFILE


def ros_environment(domain_id, transport='shm'):
    """Environment for a ROS process of a test: local discovery, own domain, unbuffered logs,
    and the shared-memory transport of :data:`FASTDDS_PROFILE` (``transport='shm'``) or the
    middleware's default settings (``'default'``)."""
    env = dict(os.environ)
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    if transport == 'shm':
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = FASTDDS_PROFILE
    env.update({
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_DOMAIN_ID': str(domain_id),
        'PYTHONUNBUFFERED': '1',
        'RCUTILS_LOGGING_BUFFERED_STREAM': '1',
        'RCUTILS_COLORIZED_OUTPUT': '0',
        'PYTHONPATH': os.pathsep.join(p for p in (REPO_ROOT, env.get('PYTHONPATH')) if p),
    })
    env.pop('ROS_LOCALHOST_ONLY', None)
    return env


def _parameter_argument(name, value):
    if isinstance(value, bool):
        text = 'true' if value else 'false'
    elif isinstance(value, float):
        text = repr(float(value))
    elif isinstance(value, str) and value == '':
        text = "''"
    else:
        text = str(value)
    return f'{name}:={text}'


class NodeProcess:
    """The detector node in its own process, its stdout and stderr in ``log_path``.

    :param log_path: file receiving the process output.
    :param domain_id: ROS_DOMAIN_ID of the process.
    :param parameters: dict name -> value passed with ``-p``.
    :param namespace: node namespace (``/x``) or None.
    :param transport: ``shm`` or ``default`` (see :func:`ros_environment`).
    """

    def __init__(self, log_path, domain_id, parameters=None, namespace=None, transport='shm'):
        self.log_path = str(log_path)
        command = [sys.executable, '-m', 'grasp_fcn_ros.node', '--ros-args']
        for name, value in (parameters or {}).items():
            command += ['-p', _parameter_argument(name, value)]
        if namespace:
            command += ['-r', f'__ns:={namespace}']
        self._log = open(self.log_path, 'wb')
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=ros_environment(domain_id, transport),
                                        cwd=REPO_ROOT)
        self.returncode = None

    def log(self, start=0):
        """The captured output from byte offset ``start`` on."""
        with open(self.log_path, 'rb') as stream:
            stream.seek(start)
            return stream.read().decode('utf-8', errors='replace')

    def log_offset(self):
        """Current size of the captured output, to read only what comes after."""
        return os.path.getsize(self.log_path)

    def alive(self):
        return self.process.poll() is None

    def stop(self, timeout=30.0):
        """SIGINT, then wait; kills the process when it does not exit in time.

        :returns: the exit code (None when it had to be killed).
        """
        if self.returncode is not None or self.process.poll() is not None:
            self.returncode = self.process.poll() if self.returncode is None else self.returncode
            self._log.close()
            return self.returncode
        self.process.send_signal(signal.SIGINT)
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.returncode = None
        self._log.close()
        return self.returncode


def _stamp_key(msg):
    if hasattr(msg, 'header'):
        stamp = msg.header.stamp
    elif getattr(msg, 'markers', None):
        stamp = msg.markers[0].header.stamp
    else:
        return None
    return stamp.sec, stamp.nanosec


class Inbox:
    """Messages received on one subscription, in arrival order."""

    def __init__(self):
        self.messages = []

    def __call__(self, msg):
        self.messages.append(msg)

    def __len__(self):
        return len(self.messages)

    def with_stamp(self, stamp):
        """Received messages whose header stamp (a MarkerArray's: its first marker's) equals
        ``stamp``."""
        key = (stamp.sec, stamp.nanosec)
        return [m for m in self.messages if _stamp_key(m) == key]

    def clear(self):
        self.messages.clear()


class RosClient:
    """A test-side rclpy node in its own context, spun by the waiting helpers.

    :param domain_id: ROS_DOMAIN_ID to join.
    :param name: node name.
    """

    def __init__(self, domain_id, name='grasp_fcn_test_client'):
        use_test_transport()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._clients = {}

    def publisher(self, msg_type, topic, qos=TEST_QOS):
        return self.node.create_publisher(msg_type, topic, qos)

    def subscribe(self, msg_type, topic, qos=TEST_QOS):
        """Subscribe and collect the messages in an :class:`Inbox`."""
        inbox = Inbox()
        inbox.subscription = self.node.create_subscription(msg_type, topic, inbox, qos)
        return inbox

    def wait_for(self, predicate, timeout_s, period_s=0.02):
        """Serve callbacks until ``predicate()`` is true or ``timeout_s`` seconds pass (never
        longer: with a predicate on the clock it paces a publisher).

        :returns: the final value of ``predicate()``.
        """
        return spin_until(self.executor, predicate, max(timeout_s, 0.0), period_s)

    def call(self, srv_type, name, request, timeout_s=60.0):
        """Call a service, waiting for it to appear and answer.

        :raises TimeoutError: when there is no service or no answer in time.
        """
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not self.wait_for(client.service_is_ready, timeout_s):
            raise TimeoutError(f'service {name} not available after {timeout_s} s')
        future = client.call_async(request)
        if not self.wait_for(future.done, timeout_s):
            raise TimeoutError(f'service {name} did not answer in {timeout_s} s')
        return future.result()

    def set_parameters(self, node_name, values, timeout_s=60.0):
        """Set parameters through ``<node>/set_parameters``.

        :returns: list of rcl_interfaces SetParametersResult, one per parameter.
        """
        request = SetParameters.Request(parameters=[
            Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        return self.call(SetParameters, f'{node_name}/set_parameters', request,
                         timeout_s).results

    def get_parameters(self, node_name, names, timeout_s=30.0):
        """Read parameters through ``<node>/get_parameters``: dict name -> Python value."""
        response = self.call(GetParameters, f'{node_name}/get_parameters',
                             GetParameters.Request(names=list(names)), timeout_s)
        return {name: parameter_value_to_python(value)
                for name, value in zip(names, response.values)}

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def client_fixture(domain_id, name):
    """A module-scoped pytest fixture: a :class:`RosClient` in ``domain_id``, closed after the
    module's tests."""

    @pytest.fixture(scope='module')
    def client():
        ros = RosClient(domain_id, name)
        yield ros
        ros.close()

    return client


def wait_for_log(client, process, text, start=0, timeout_s=30.0):
    """Spin until ``text`` appears in the process output after byte ``start``."""
    return client.wait_for(lambda: text in process.log(start), timeout_s, period_s=0.05)


# --- message builders -------------------------------------------------------------------------

class StampCounter:
    """Unique, increasing stamps so a test can match outputs to the frame it sent."""

    def __init__(self, start_sec=1000):
        self._sec = start_sec

    def next(self):
        self._sec += 1
        return Time(sec=self._sec, nanosec=123456789)


def depth_image_msg(depth, encoding, stamp, frame_id='camera_depth_optical_frame',
                    pad_bytes=0, big_endian=False):
    """A depth Image from an array: uint16 for 16UC1 / mono16, float32 for 32FC1.

    :param pad_bytes: extra bytes at the end of every row (``step`` > width * pixel size).
    :param big_endian: store the pixels big-endian and set ``is_bigendian``.
    """
    dtype = {'16UC1': '<u2', 'mono16': '<u2', '32FC1': '<f4'}.get(encoding, '<u2')
    values = np.asarray(depth).astype(np.dtype(dtype).newbyteorder('>' if big_endian else '<'))
    height, width = values.shape[:2]
    rows = values.reshape(height, -1).view(np.uint8).reshape(height, -1)
    if pad_bytes:
        rows = np.concatenate([rows, np.full((height, pad_bytes), 0xAB, np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                step=rows.shape[1])
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = array.array('B', rows.tobytes())
    return msg


def camera_info_msg(fx, fy, cx, cy, width, height, stamp,
                    frame_id='camera_depth_optical_frame'):
    """A CameraInfo with K, P and the image size (distortion-free), pixels."""
    return camera_info_from_intrinsics(CameraIntrinsics(fx, fy, cx, cy, width, height),
                                       Header(stamp=stamp, frame_id=frame_id))


class DetectorTopics:
    """The test side of one detector node: input publishers and output inboxes.

    :param client: a :class:`RosClient`.
    :param namespace: the node's namespace ('' or '/x').
    """

    #: output name -> message type, under ``<namespace>/grasp_detector/``.
    OUTPUTS = {'grasps': PoseArray, 'best_grasp': PoseStamped, 'grasp_details': PointCloud2,
               'markers': MarkerArray, 'latency': PointCloud2}

    def __init__(self, client, namespace=''):
        self.client = client
        ns = namespace.rstrip('/')
        self.node_name = f'{ns}/grasp_detector'
        self.depth_pub = client.publisher(Image, f'{ns}/depth')
        self.info_pub = client.publisher(CameraInfo, f'{ns}/camera_info')
        self.color_pub = client.publisher(Image, f'{ns}/color')
        self.inbox = {name: client.subscribe(msg_type, f'{self.node_name}/{name}')
                      for name, msg_type in self.OUTPUTS.items()}

    def ready(self):
        """True once the node subscribes to the inputs and publishes to the test's inboxes."""
        return (self.depth_pub.get_subscription_count() > 0
                and self.info_pub.get_subscription_count() > 0
                and all(inbox.subscription.get_publisher_count() > 0
                        for inbox in self.inbox.values()))

    def send(self, depth_msg, info_msg=None):
        """Publish camera_info (when given) then the depth frame."""
        if info_msg is not None:
            self.info_pub.publish(info_msg)
        self.depth_pub.publish(depth_msg)

    def outputs(self, stamp):
        """Outputs received for one frame: dict output name -> list of messages."""
        return {name: inbox.with_stamp(stamp) for name, inbox in self.inbox.items()
                if name != 'latency'}

    #: Outputs of every served frame, with or without grasps.
    EVERY_FRAME = ('grasps', 'grasp_details', 'markers')

    def served(self, stamp, names=EVERY_FRAME):
        """True when every output in ``names`` arrived for the frame."""
        out = self.outputs(stamp)
        return all(out[name] for name in names)

    def send_until(self, depth_msg, info_msg, predicate, timeout_s, resend_s=15.0, send=None):
        """Send a frame, and again every ``resend_s`` (a message lost before discovery
        completed), until ``predicate()`` holds or ``timeout_s`` passes.

        :param send: ``send(depth_msg, info_msg)`` to use instead of :meth:`send` (to publish
            camera_info differently).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            (send or self.send)(depth_msg, info_msg)
            remaining = deadline - time.monotonic()
            if self.client.wait_for(predicate, min(resend_s, max(remaining, 0.0))):
                return True
            if time.monotonic() >= deadline:
                return False

    def serve(self, depth_msg, info_msg, timeout_s=90.0, resend_s=15.0, names=EVERY_FRAME):
        """Send a frame until its outputs arrive; returns them (raises AssertionError if not).

        :param resend_s: see :meth:`send_until`; ``timeout_s`` sends the frame once only (a
            test that counts the outputs of a frame).
        :param names: the outputs to wait for.
        """
        stamp = depth_msg.header.stamp
        ok = self.send_until(depth_msg, info_msg, lambda: self.served(stamp, names),
                             timeout_s, resend_s)
        assert ok, f'no {names} for the frame stamped {stamp.sec}.{stamp.nanosec:09d}'
        return self.outputs(stamp)

    def flush(self, depth_msg, info_msg, timeout_s=90.0):
        """Serve a frame that has grasps until it arrived on every output, ~/best_grasp too.

        Every output topic delivers in publication order and the node serves one frame after
        the other, so afterwards every output of an earlier frame has arrived: what is missing
        now was never published.

        :returns: the frame's outputs.
        """
        return self.serve(depth_msg, info_msg, timeout_s,
                          names=self.EVERY_FRAME + ('best_grasp',))


# --- a camera in its own process ----------------------------------------------------------------

class CameraProcess:
    """A fake depth camera in its own process: publishes ``depth`` (16UC1 box on a table) and
    ``camera_info`` with the same stamp, ``first_sec``, ``first_sec + 1``, ... at ``rate_hz``.

    :param log_path: file receiving the process output.
    :param domain_id: ROS_DOMAIN_ID of the process.
    :param first_sec: seconds of the first stamp (nanoseconds are 0).
    :param rate_hz: frames per second.
    :param frames: frames to publish before exiting; 0 = until stopped.
    :param width: image width, pixels.
    :param height: image height, pixels.
    :param namespace: topic namespace ('' or '/x').
    :param reliability: QoS reliability of the publishers, ``reliable`` or ``best_effort``.
    :param transport: ``shm`` or ``default`` (see :func:`ros_environment`).
    """

    def __init__(self, log_path, domain_id, first_sec, rate_hz=5.0, frames=0, width=640,
                 height=480, namespace='', reliability='reliable', transport='shm'):
        self.first_sec = int(first_sec)
        self.width, self.height = int(width), int(height)
        command = [sys.executable, os.path.abspath(__file__), 'camera',
                   '--first-sec', str(self.first_sec), '--rate', str(rate_hz),
                   '--frames', str(frames), '--width', str(width), '--height', str(height),
                   '--namespace', namespace, '--reliability', reliability]
        self.log_path = str(log_path)
        self._log = open(self.log_path, 'wb')
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=ros_environment(domain_id, transport),
                                        cwd=REPO_ROOT)

    def owns(self, stamp):
        """True when ``stamp`` is one this camera publishes."""
        return stamp.nanosec == 0 and stamp.sec >= self.first_sec and stamp.sec < (
            self.first_sec + 10 ** 6)

    def log(self):
        with open(self.log_path, 'rb') as stream:
            return stream.read().decode('utf-8', errors='replace')

    def alive(self):
        return self.process.poll() is None

    def kill(self):
        """Vanish without a goodbye (SIGKILL): no clean unregistration from the graph."""
        self.process.kill()
        self.process.wait()
        self._log.close()

    def stop(self, timeout=30.0):
        """SIGINT, then wait (kill when it does not exit in time); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def _camera_main(argv):
    """Body of :class:`CameraProcess` (``python ros_harness.py camera ...``)."""
    parser = argparse.ArgumentParser(prog='ros_harness.py camera')
    parser.add_argument('--first-sec', type=int, required=True)
    parser.add_argument('--rate', type=float, default=5.0)
    parser.add_argument('--frames', type=int, default=0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--namespace', default='')
    parser.add_argument('--reliability', choices=('reliable', 'best_effort'),
                        default='reliable')
    options = parser.parse_args(argv)
    from rclpy.executors import ExternalShutdownException

    from scenes import box_on_plane

    width, height = options.width, options.height
    depth = box_on_plane(width, height, box=(width // 2 - 30, height // 2 - 20, 60, 40),
                         dtype=np.uint16)
    rclpy.init()
    node = rclpy.create_node('fake_camera')
    ns = options.namespace.rstrip('/')
    qos = QoSProfile(reliability=(ReliabilityPolicy.RELIABLE if options.reliability == 'reliable'
                                  else ReliabilityPolicy.BEST_EFFORT),
                     history=HistoryPolicy.KEEP_LAST, depth=TEST_QOS.depth)
    depth_pub = node.create_publisher(Image, f'{ns}/depth', qos)
    info_pub = node.create_publisher(CameraInfo, f'{ns}/camera_info', qos)
    period = 1.0 / options.rate
    start = time.monotonic()
    try:
        i = 0
        while rclpy.ok() and (options.frames <= 0 or i < options.frames):
            stamp = Time(sec=options.first_sec + i, nanosec=0)
            info_pub.publish(camera_info_msg(CORNELL_INTRINSICS.fx, CORNELL_INTRINSICS.fy,
                                             width / 2, height / 2, width, height, stamp))
            depth_pub.publish(depth_image_msg(depth, '16UC1', stamp))
            if i == 0:
                print(f'publishing {width}x{height} from stamp {options.first_sec}',
                      flush=True)
            i += 1
            time.sleep(max(start + i * period - time.monotonic(), 0.0))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    if sys.argv[1:2] == ['camera']:
        _camera_main(sys.argv[2:])
    else:
        sys.exit(f'usage: {sys.argv[0]} camera --first-sec N [options]')
