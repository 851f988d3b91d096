"""The ``grasp_detector`` ROS 2 node: depth images in, grasp poses out.

Subscribes to ``depth`` (sensor_msgs/Image), ``camera_info`` and optionally ``color``; publishes
``~/grasps``, ``~/best_grasp``, ``~/grasp_details``, ``~/markers``, ``~/latency`` and, on
demand, ``~/quality_image`` and ``~/debug_image``; serves ``~/detect`` (std_srvs/Trigger).
Callbacks only store the newest message; a worker thread runs the detector on the newest depth
frame, so a slow model skips frames instead of building a queue (with ``detection_mode:
on_demand``, only on the next frame after a ``~/detect`` call). The published poses are tool
poses of the configured gripper (:mod:`grasp_fcn_ros.core.gripper`). A depth frame is paired
with the camera_info of the same stamp when one arrived, else with the newest. All the maths
lives in :mod:`grasp_fcn_ros.core`.
"""

from collections import deque, OrderedDict
from dataclasses import dataclass
import gc
import sys
import threading
import time
import traceback

import cv2
from geometry_msgs.msg import PoseArray, PoseStamped
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from .core.backends import create_backend
from .core.depth import DepthError
from .core.detector import DetectorConfig, GraspDetector
from .core.devices import DEVICES
from .core.ensemble import AveragedBackend
from .core.geometry import GeometryError
from .core.gripper import apply_gripper, APPROACH_MODES, AXES, GripperConfig, validate_gripper
from .core.jaws import JawConfig
from .core.model import load_checkpoint
from .core.postprocess import PostprocessConfig
from .core.quantize import calibration_paths
from .core.runtime import BACKEND_CHOICES, choose_runtime, PRECISION_CHOICES
from .core.scale import SCALE_MODES, SCENE_DEPTH_STATISTICS
from .resources import default_calibration_dir, default_model_path
from .ros_conversions import (
    depth_from_image,
    grasp_to_pose_stamped,
    grasps_to_cloud,
    grasps_to_markers,
    grasps_to_pose_array,
    image_from_float,
    image_from_rgb,
    ImageError,
    intrinsics_from_camera_info,
    latency_message,
    LATENCY_STAGES,
    make_header,
    quality_color,
    rgb_from_image,
)
from .transforms import create_tf_lookup, TF_TIMEOUT_S, transform_grasps, TransformError

NODE_NAME = 'grasp_detector'

#: Seconds between two identical warnings about bad input (a good frame resets this).
WARN_THROTTLE_S = 5.0
#: How long shutdown waits for the frame in progress, seconds.
WORKER_JOIN_TIMEOUT_S = 10.0
#: Period of the timer that writes the latency log line, seconds.
STATS_TIMER_PERIOD_S = 0.5
#: camera_info messages kept to pair a depth frame with the one of the same stamp.
CAMERA_INFO_HISTORY = 10
#: Period of the check of what the camera_info publishers offer, seconds.
PUBLISHER_QOS_CHECK_PERIOD_S = 1.0

#: ``image_reliability`` values -> QoS reliability of the image subscriptions.
RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
               'reliable': ReliabilityPolicy.RELIABLE}
#: ``image_reliability`` values: ``auto`` matches the publishers (see
#: :func:`matching_reliability`), the others force one.
IMAGE_RELIABILITY = ('auto',) + tuple(RELIABILITY)


#: Event callbacks for the subscriptions this node destroys while it spins (re-matched to their
#: publishers): none, so they add no event handlers to the executor's wait set. rclpy's
#: multi-threaded executor raises InvalidHandle, and the node would stop, when an event handler
#: is destroyed by a callback while another thread builds the wait set. The node reports
#: incompatible image publishers itself (``_warn_incompatible_publishers``).
NO_EVENT_HANDLERS = SubscriptionEventCallbacks(use_default_callbacks=False)


def matching_reliability(offered):
    """The image subscription's reliability for the reliabilities its publishers offer.

    Reliable when there are publishers and every one of them is reliable (so large frames are
    repaired instead of lost, as rosbag2 does); best effort otherwise, which matches every
    publisher (a reliable subscription would not connect to a best-effort one).

    :param offered: iterable of ReliabilityPolicy, one per publisher.
    :returns: ``'reliable'`` or ``'best_effort'``.
    """
    offered = list(offered)
    if offered and all(r == ReliabilityPolicy.RELIABLE for r in offered):
        return 'reliable'
    return 'best_effort'


def image_qos(reliability='best_effort'):
    """Image subscriptions: only the newest frame matters (keep last 1); best effort matches
    reliable and best-effort publishers."""
    return QoSProfile(reliability=RELIABILITY[reliability], history=HistoryPolicy.KEEP_LAST,
                      depth=1, durability=DurabilityPolicy.VOLATILE)


#: camera_info: best effort + volatile match every publisher, so any camera driver connects; a
#: driver sends it with every frame, a lost one is replaced by the next. This subscription
#: never receives what was published before it matched, though.
CAMERA_INFO_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT,
                             history=HistoryPolicy.KEEP_LAST, depth=5,
                             durability=DurabilityPolicy.VOLATILE)
#: The second camera_info subscription, made while a publisher offers reliable +
#: transient-local (a camera_info published once, "latched"): it receives the message that
#: publisher sent before. Requesting it of other publishers would be an incompatible QoS.
LATCHED_CAMERA_INFO_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                                     history=HistoryPolicy.KEEP_LAST, depth=1,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Outputs: reliable serves both reliable and best-effort subscribers (RViz, controllers).
OUTPUT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                        depth=5)
IMAGE_OUTPUT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                              history=HistoryPolicy.KEEP_LAST, depth=1)

#: Approach of ``approach_mode: top_down``: -Z of output_frame (down, REP 103), or, when the
#: grasps stay in the camera's optical frame, its optical axis (a camera looking down).
DOWN_IN_OUTPUT_FRAME = (0.0, 0.0, -1.0)
OPTICAL_AXIS = (0.0, 0.0, 1.0)

DETECTION_MODES = ('continuous', 'on_demand')
#: Threads of the node's executor: the ~/detect service waits in one while others serve the
#: subscriptions, timers and parameter services.
EXECUTOR_THREADS = 4

#: Parameters whose change reloads the model.
MODEL_PARAMETERS = ('model_path', 'device', 'backend', 'precision', 'int8_calibration',
                    'inference_threads', 'test_time_mirror')


@dataclass(frozen=True)
class ParameterSpec:
    """A node parameter: default, description and allowed range.

    :param default: default value (its type is the parameter's type).
    :param description: what it does, with units.
    :param range: (min, max) inclusive for numbers, or None.
    :param read_only: True when a change needs a restart.
    :param constraints: allowed values in words, for strings.
    """

    default: object
    description: str
    range: tuple = None
    read_only: bool = False
    constraints: str = ''

    def descriptor(self):
        """The rcl_interfaces ParameterDescriptor of this parameter."""
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                         additional_constraints=self.constraints)
        if self.range is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.range[0]), to_value=float(self.range[1]), step=0.0)]
        elif self.range is not None and isinstance(self.default, int) and not isinstance(
                self.default, bool):
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.range[0]), to_value=int(self.range[1]), step=1)]
        return descriptor


_CORE = DetectorConfig()
_POST = _CORE.postprocess
_JAWS = _CORE.jaws

#: Every parameter of the node, in declaration order; config/detector.yaml holds the same
#: defaults. Detector defaults come from the core's DetectorConfig / PostprocessConfig.
PARAMETERS = {
    'model_path': ParameterSpec(
        '', "grasp network checkpoint; '' = the packaged model (models/grasp_fcn_cornell.pt). "
        'A change reloads the model (rejected, old model kept, when it cannot be loaded)'),
    'device': ParameterSpec(
        'auto', 'inference device; auto = CUDA when available, else CPU. A change reloads the '
        'model', constraints=f"one of {', '.join(DEVICES)} or cuda:N"),
    'backend': ParameterSpec(
        'auto', 'inference backend; auto = PyTorch on a CUDA device, else OpenVINO when '
        'installed, else channels-last PyTorch (the choice and its reason are logged). A '
        'change reloads the model', constraints=f"one of {', '.join(BACKEND_CHOICES)}"),
    'precision': ParameterSpec(
        'auto', 'network precision; auto = the fastest one this machine runs natively among '
        'those verified for accuracy: on a CPU int8 (OpenVINO with NNCF; quantised on first '
        'use and cached) where it has VNNI, AMX or AVX2, else bf16 where native, else fp32; '
        'fp16 on CUDA. A change reloads the model',
        constraints=f"one of {', '.join(PRECISION_CHOICES)}"),
    'int8_calibration': ParameterSpec(
        '', "folder of depth frames from the robot's camera that calibrate int8 quantisation; "
        "'' = the bundled real frames (demo/frames). A change reloads the model"),
    'inference_threads': ParameterSpec(
        0, "CPU threads of the network on a CPU device; 0 = the runtime's default (OpenVINO, "
        'ONNX Runtime: every core this process may run on, see taskset; PyTorch: its own). '
        "Fewer leave cores to the robot's other processes. A change reloads the model",
        (0, 256)),
    'test_time_mirror': ParameterSpec(
        False, 'also run the network on the left-right mirrored frame and average the two '
        'maps: better grasps on unseen objects for twice the network time. A change reloads '
        'the model'),
    'depth_scale': ParameterSpec(
        0.001, 'metres per unit of 16UC1 / mono16 depth images (0.001 = millimetres)',
        (1e-6, 1.0)),
    'depth_rectified': ParameterSpec(
        True, 'the depth image is rectified (aligned_depth_to_color, image_rect): pixels map '
        "through camera_info's P (K when P is all zero); false = a raw image: pixels are "
        'undistorted with D (plumb_bob, rational_polynomial or equidistant) and map through K'),
    'jaw_check': ParameterSpec(
        _JAWS.enabled, 'drop grasps whose open jaws would not go down beside the grasped '
        'surface (a jaw on the object top or on a neighbour); the next peaks fill max_grasps'),
    'finger_width': ParameterSpec(
        _JAWS.finger_width_m, 'thickness of a jaw along the closing direction, metres',
        (0.001, 0.1)),
    'jaw_depth': ParameterSpec(
        _JAWS.jaw_depth_m, 'size of a jaw across the closing direction, metres', (0.001, 0.2)),
    'jaw_clearance': ParameterSpec(
        _JAWS.clearance_m, 'how far below the grasped surface (along the support plane normal) '
        'the scene under each jaw must be, metres; at most half the surface height above the '
        'support is asked', (0.0, 0.2)),
    'jaw_margin': ParameterSpec(
        _JAWS.margin_m, 'extra opening on each side beyond the predicted width for the check, '
        'metres', (0.0, 0.1)),
    'scale_mode': ParameterSpec(
        _CORE.scale_mode, 'metric: the crop side follows the focal length and the scene depth so '
        'that objects reach the network at the scale of its training data (models that record '
        'it); pixels: crop_size', constraints=f"one of {', '.join(SCALE_MODES)}"),
    'scene_depth_statistic': ParameterSpec(
        _CORE.scene_depth_statistic, 'scene depth of metric mode: a statistic of the valid '
        'depth in the crop', constraints=f"one of {', '.join(SCENE_DEPTH_STATISTICS)}"),
    'crop_size': ParameterSpec(
        _CORE.crop_size_px, 'side of the square window cut from the depth image and resized '
        'to the network input, source pixels; 0 = the largest centred square. Used in pixels '
        'scale mode, and in metric mode with a model that records no scale', (0, 8192)),
    'crop_offset_x': ParameterSpec(
        _CORE.crop_offset_x_px, 'shift of the window centre to the right, source pixels',
        (-8192, 8192)),
    'crop_offset_y': ParameterSpec(
        _CORE.crop_offset_y_px, 'shift of the window centre downwards, source pixels',
        (-8192, 8192)),
    'min_depth': ParameterSpec(
        _CORE.min_depth_m, 'nearest valid depth, metres (must be below max_depth)',
        (0.0, 100.0)),
    'max_depth': ParameterSpec(
        _CORE.max_depth_m, 'farthest valid depth, metres (must be above min_depth)',
        (0.0, 100.0)),
    'q_threshold': ParameterSpec(
        _POST.q_threshold, 'smallest grasp quality published, [0, 1]', (0.0, 1.0)),
    'max_grasps': ParameterSpec(
        _POST.max_grasps, 'most grasps published per frame', (1, 100)),
    'min_distance': ParameterSpec(
        _POST.min_distance_px, 'smallest distance between two grasps, network pixels',
        (1, 200)),
    'q_sigma': ParameterSpec(
        _POST.q_sigma_px, 'Gaussian sigma smoothing the quality map, network pixels (0 = none)',
        (0.0, 50.0)),
    'angle_sigma': ParameterSpec(
        _POST.angle_sigma_px, 'Gaussian sigma smoothing the angle maps, network pixels '
        '(0 = none)', (0.0, 50.0)),
    'width_sigma': ParameterSpec(
        _POST.width_sigma_px, 'Gaussian sigma smoothing the width map, network pixels '
        '(0 = none)', (0.0, 50.0)),
    'width_given_quality': ParameterSpec(
        _POST.width_given_quality, 'read the width map as width / Q, the width of a grasp '
        'the network is unsure of (it under-estimates those); false = the raw width map'),
    'depth_radius': ParameterSpec(
        _CORE.depth_radius_px, 'half side of the window whose median depth places a grasp, '
        'source pixels', (0, 50)),
    'output_frame': ParameterSpec(
        '', "frame of the published grasps; '' = the depth camera's frame, else transformed "
        'through tf2: a frame without a transform (or without tf2_ros) publishes nothing and '
        'says why'),
    'tf_timeout': ParameterSpec(
        TF_TIMEOUT_S, 'how long the transform into output_frame may be waited for, per frame, '
        'seconds', (0.0, 10.0)),
    'gripper_min_opening': ParameterSpec(
        0.0, 'smallest opening of the gripper, metres; narrower grasps are dropped',
        (0.0, 2.0)),
    'gripper_max_opening': ParameterSpec(
        1.0, 'largest opening of the gripper, metres; wider grasps are dropped (not clipped). '
        'A Franka Hand opens 0.08', (0.0, 2.0)),
    'grasp_depth_offset': ParameterSpec(
        0.0, 'tool centre point moved this far along the approach from the object surface, '
        'metres (positive = into the object)', (-0.5, 0.5)),
    'gripper_closing_axis': ParameterSpec(
        'x', 'axis of the published pose along which the jaws close (a Franka Hand: y)',
        constraints=f"one of {', '.join(AXES)}"),
    'gripper_approach_axis': ParameterSpec(
        'z', 'axis of the published pose pointing from the gripper towards the object',
        constraints=f"one of {', '.join(AXES)}, not the closing axis"),
    'approach_mode': ParameterSpec(
        'camera_ray', 'camera_ray = approach along the camera ray through the grasp; '
        'top_down = along -Z of output_frame (along the optical axis when output_frame is '
        "''), the closing direction laid into the plane normal to it",
        constraints=f"one of {', '.join(APPROACH_MODES)}"),
    'detection_mode': ParameterSpec(
        'continuous', 'continuous = every depth frame the node can keep up with; on_demand = '
        'only the next frame after a ~/detect call (no inference in between)',
        constraints=f"one of {', '.join(DETECTION_MODES)}"),
    'detect_timeout': ParameterSpec(
        10.0, 'how long a ~/detect call waits for the next depth frame to be processed, '
        'seconds', (0.1, 600.0)),
    'publish_debug_images': ParameterSpec(
        False, 'publish ~/quality_image and ~/debug_image even when nobody subscribes'),
    'use_color': ParameterSpec(
        True, 'draw ~/debug_image on the colour image (subscribed only while ~/debug_image has '
        'subscribers or publish_debug_images is set, and used only when registered to the '
        'depth image: same size and frame); false = always on the depth rendering'),
    'image_reliability': ParameterSpec(
        'auto', 'QoS reliability of the depth and color subscriptions. auto = reliable when '
        'every publisher of the topic is reliable (large frames are then repaired, not lost), '
        'else best effort; re-checked as publishers come and go. best_effort and reliable '
        'force one (reliable does not connect to best-effort publishers). A change needs a '
        'restart', read_only=True, constraints=f"one of {', '.join(IMAGE_RELIABILITY)}"),
    'latency_log_period': ParameterSpec(
        10.0, 'seconds between log lines with frame rate and p50/p99 latency; 0 = off',
        (0.0, 3600.0)),
}

#: name -> default value, the single source of the defaults.
DEFAULTS = {name: spec.default for name, spec in PARAMETERS.items()}


class StartupError(RuntimeError):
    """Raised by the node's constructor when it cannot run with the settings it was given."""


def float_parameters():
    """Names of the parameters whose type is float (an integer is accepted for them)."""
    return {name for name, spec in PARAMETERS.items() if isinstance(spec.default, float)}


def coerce_parameter(parameter):
    """``parameter`` with an integer value turned into a float when the parameter is a float
    one (``-p min_depth:=0``, ``max_depth: 5`` in a YAML file); else ``parameter`` itself.

    :param parameter: an rclpy :class:`~rclpy.parameter.Parameter`.
    """
    if (parameter.name in float_parameters()
            and parameter.type_ == Parameter.Type.INTEGER):
        return Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
    return parameter


def validate_settings(values):
    """Check relations between parameter values that ranges alone cannot express.

    :param values: dict name -> value of every parameter.
    :returns: None when the settings are usable, else the reason.
    """
    if values['min_depth'] >= values['max_depth']:
        return (f"min_depth ({values['min_depth']} m) must be smaller than max_depth "
                f"({values['max_depth']} m)")
    device = str(values['device']).strip().lower()
    if device not in DEVICES and not (device.startswith('cuda:') and device[5:].isdigit()):
        return (f"unknown device '{values['device']}' (expected one of "
                f"{', '.join(DEVICES)} or cuda:N)")
    for name, choices in (('image_reliability', IMAGE_RELIABILITY),
                          ('backend', BACKEND_CHOICES), ('precision', PRECISION_CHOICES),
                          ('scale_mode', SCALE_MODES),
                          ('scene_depth_statistic', SCENE_DEPTH_STATISTICS),
                          ('detection_mode', DETECTION_MODES)):
        if values[name] not in choices:
            return (f"unknown {name} '{values[name]}' (expected one of "
                    f"{', '.join(choices)})")
    return validate_gripper(gripper_config(values))


def gripper_config(values):
    """The core :class:`GripperConfig` of a dict of parameter values."""
    return GripperConfig(
        min_opening_m=float(values['gripper_min_opening']),
        max_opening_m=float(values['gripper_max_opening']),
        depth_offset_m=float(values['grasp_depth_offset']),
        closing_axis=str(values['gripper_closing_axis']),
        approach_axis=str(values['gripper_approach_axis']),
        approach_mode=str(values['approach_mode']))


def detector_config(values):
    """The core :class:`DetectorConfig` of a dict of parameter values."""
    post = PostprocessConfig(
        q_threshold=float(values['q_threshold']), max_grasps=int(values['max_grasps']),
        min_distance_px=int(values['min_distance']), q_sigma_px=float(values['q_sigma']),
        angle_sigma_px=float(values['angle_sigma']),
        width_sigma_px=float(values['width_sigma']),
        width_given_quality=bool(values['width_given_quality']))
    return DetectorConfig(
        crop_size_px=int(values['crop_size']), crop_offset_x_px=int(values['crop_offset_x']),
        crop_offset_y_px=int(values['crop_offset_y']), min_depth_m=float(values['min_depth']),
        max_depth_m=float(values['max_depth']), depth_radius_px=int(values['depth_radius']),
        postprocess=post, scale_mode=str(values['scale_mode']),
        jaws=JawConfig(enabled=bool(values['jaw_check']),
                       finger_width_m=float(values['finger_width']),
                       jaw_depth_m=float(values['jaw_depth']),
                       clearance_m=float(values['jaw_clearance']),
                       margin_m=float(values['jaw_margin'])),
        scene_depth_statistic=str(values['scene_depth_statistic']))


def model_file(values):
    """The checkpoint path a set of parameter values asks for."""
    return values['model_path'] or default_model_path()


def check_model(values):
    """The quick checks of a model change, made before it is accepted: the device can be used by
    the backend, the file is a readable checkpoint and, for int8, the calibration folder holds
    depth frames. Building the backend (moving the network to the device, exporting and
    quantising it) is left to the loader thread.

    :raises grasp_fcn_ros.core.model.ModelError: naming the cause.
    """
    choice = choose_runtime(values['backend'], values['precision'], values['device'])
    load_checkpoint(model_file(values))
    if choice.precision == 'int8':
        calibration_paths(backend_options(values, choice)['calibration'])


def backend_options(values, choice):
    """Backend options of the parameter values for a runtime choice (CPU threads, the int8
    calibration)."""
    options = {}
    if choice.device == 'cpu':
        threads = int(values['inference_threads'])
        if threads or choice.backend in ('torch', 'torch-channels-last'):
            options['threads'] = threads  # PyTorch's 0: back to its default after a change
    if choice.precision == 'int8':
        options.update(calibration=values['int8_calibration'] or default_calibration_dir(),
                       depth_scale=float(values['depth_scale']))
    return options


def build_backend(values):
    """The inference backend of a set of parameter values (the runtime chosen as
    :func:`~grasp_fcn_ros.core.runtime.choose_runtime` chooses it; ``choice`` says why).

    The parameters go to :func:`~grasp_fcn_ros.core.backends.create_backend` as given, not
    resolved, so that what it does for a request of ``auto`` (a CUDA graph on a GPU) applies.
    The backend is warmed up on a blank input before it is returned (its ``warmup_s``, seconds):
    a runtime's first call pays for its lazy set-up (memory, kernel selection, a CUDA graph's
    capture), and that call is not the first camera frame's.
    """
    choice = choose_runtime(values['backend'], values['precision'], values['device'])
    backend = create_backend(model_file(values), values['backend'], values['device'],
                             values['precision'], **backend_options(values, choice))
    if values['test_time_mirror']:
        backend = AveragedBackend([backend], mirror=True)
    if hasattr(backend, 'warmup'):
        started = time.perf_counter()
        backend.warmup()
        backend.warmup_s = time.perf_counter() - started
    return backend


def quality_in_source(quality, transform, width, height):
    """The network-resolution quality map placed back into the source image (0 outside)."""
    out = np.zeros((height, width), dtype=np.float32)
    resized = cv2.resize(np.asarray(quality, dtype=np.float32), (transform.size, transform.size),
                         interpolation=cv2.INTER_LINEAR)
    transform.crop(out)[...] = resized
    return out


def depth_colormap(depth_m):
    """RGB uint8 rendering of a depth image (near to far over the 1-99 % range; invalid black)."""
    depth_m = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    rgb = np.zeros(depth_m.shape + (3,), dtype=np.uint8)
    if not valid.any():
        return rgb
    lo, hi = np.percentile(depth_m[valid], [1.0, 99.0])
    scaled = np.clip((np.where(valid, depth_m, lo) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def render_overlay(base_rgb, detection):
    """Draw the crop window and the grasp rectangles (coloured by quality) on an RGB image."""
    image = np.ascontiguousarray(base_rgb, dtype=np.uint8).copy()
    t = detection.transform
    cv2.rectangle(image, (t.x0, t.y0), (t.x0 + t.size - 1, t.y0 + t.size - 1),
                  (255, 255, 255), 1)
    for grasp in reversed(detection.grasps_2d):  # the best grasp is drawn last, on top
        c = quality_color(grasp.quality)
        colour = (int(255 * c.r), int(255 * c.g), int(255 * c.b))
        corners = np.round(grasp.polygon()).astype(np.int32)
        cv2.polylines(image, [corners], True, colour, 2)
        cv2.circle(image, (int(round(grasp.u)), int(round(grasp.v))), 3, colour, -1)
    return image


class DetectRequest:
    """One ``~/detect`` call: set done once the frame it was given to is processed."""

    def __init__(self):
        self.done = threading.Event()
        self.success, self.message = False, ''

    def finish(self, success, message):
        self.success, self.message = bool(success), str(message)
        self.done.set()


def grasp_summary(grasps, header):
    """One line on a frame's grasps, for the answer of ``~/detect``."""
    stamp = f'{header.stamp.sec}.{header.stamp.nanosec:09d}'
    if not grasps:
        return f'0 grasps in the depth frame stamped {stamp} (none above q_threshold)'
    best = grasps[0]
    x, y, z = (float(c) for c in best.position_m)
    return (f"{len(grasps)} grasps in the depth frame stamped {stamp}, frame "
            f"'{header.frame_id}'; best: quality {best.quality:.2f} at ({x:.3f}, {y:.3f}, "
            f'{z:.3f}) m, width {best.width_m:.3f} m')


class GraspDetectorNode(Node):
    """Detects grasps in the newest depth frame and publishes them as poses and markers.

    :param tf_lookup: the :class:`~grasp_fcn_ros.transforms.TransformLookup` that moves grasps
        into ``output_frame``; None builds the tf2-backed one when ``output_frame`` is set.
    :param kwargs: passed to :class:`rclpy.node.Node` (``context``, ``parameter_overrides``).
    """

    def __init__(self, tf_lookup=None, **kwargs):
        # set before anything can fail: destroy_node() reads them even for a half-built node
        self._worker = None
        super().__init__(NODE_NAME, **kwargs)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # (depth msg, perf_counter at receipt, DetectRequests it answers): the one-slot mailbox
        self._pending = None
        self._armed = []  # ~/detect requests waiting for the next depth frame
        # parameter values whose model the loader thread is to load (the newest request wins)
        self._reload = None
        self._reload_wake = threading.Condition(self._lock)
        self._loader = None
        self._stopping = False
        # camera_info messages: the newest, and the last few by stamp so a depth frame gets
        # the camera_info sent with it; read when a frame uses it, so that a depth_rectified
        # change applies from the next frame
        self._camera_info = None
        self._camera_infos = OrderedDict()
        self._color_msg = None
        self._reported = {}
        self._stats = {'totals': deque(), 'skipped': 0, 'ignored': 0,
                       'since': time.monotonic(), 'quiet': False}

        # -p min_depth:=0 and `max_depth: 5` are integers: taken as floats, at start-up (the
        # overrides, which declare_parameter does not pass through pre-set callbacks) and later
        overrides = getattr(self, '_parameter_overrides', {})
        for name in float_parameters() & set(overrides):
            overrides[name] = coerce_parameter(overrides[name])
        self.add_pre_set_parameters_callback(
            lambda parameters: [coerce_parameter(p) for p in parameters])
        try:
            for name, spec in PARAMETERS.items():
                self.declare_parameter(name, spec.default, spec.descriptor())
            self._values = {name: self.get_parameter(name).value for name in PARAMETERS}
            problem = validate_settings(self._values)
            if problem:
                raise StartupError(f'invalid parameters: {problem}')
        except STARTUP_ERRORS:
            # the half-built node's services go now, while the context is valid: left to the
            # garbage collector after rclpy's shutdown, their destruction can crash the process
            self.destroy_node()
            raise
        self._config = detector_config(self._values)
        self._backend, self._model_error = None, None
        try:
            self._backend = self._load_backend(self._values)
        except Exception as exc:  # any load failure leaves the node up
            self._model_error = f"cannot load the grasp model '{model_file(self._values)}': {exc}"
            self.get_logger().error(
                f'{self._model_error}. The node stays up without a model; set model_path to a '
                'valid checkpoint.')
        self._tf, self._tf_error = tf_lookup, None
        if self._tf is None and self._values['output_frame']:
            try:
                self._tf = create_tf_lookup(self, self._values['tf_timeout'])
            except TransformError as exc:
                self._tf_error = str(exc)
                self.get_logger().error(
                    f"{exc}. Nothing is published until output_frame is '' or tf2_ros is "
                    'available.')
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._best_pub = self.create_publisher(PoseStamped, '~/best_grasp', OUTPUT_QOS)
        self._grasps_pub = self.create_publisher(PoseArray, '~/grasps', OUTPUT_QOS)
        self._details_pub = self.create_publisher(PointCloud2, '~/grasp_details', OUTPUT_QOS)
        self._markers_pub = self.create_publisher(MarkerArray, '~/markers', OUTPUT_QOS)
        self._quality_pub = self.create_publisher(Image, '~/quality_image', IMAGE_OUTPUT_QOS)
        self._debug_pub = self.create_publisher(Image, '~/debug_image', IMAGE_OUTPUT_QOS)
        self._latency_pub = self.create_publisher(PointCloud2, '~/latency', OUTPUT_QOS)

        # camera_info first: when both are ready at once, the executor serves it before depth
        self._info_sub = self.create_subscription(CameraInfo, 'camera_info',
                                                  self._on_camera_info, CAMERA_INFO_QOS)
        self._latched_info_sub = None
        self._incompatible_publishers = {}  # topic -> best-effort publishers a reliable sub misses
        self._depth_sub = self._depth_reliability = None
        self._color_sub = self._color_reliability = None
        self._match_publishers()
        self._publisher_qos_timer = self.create_timer(PUBLISHER_QOS_CHECK_PERIOD_S,
                                                      self._match_publishers)
        self._stats_timer = self.create_timer(STATS_TIMER_PERIOD_S, self._log_stats)
        # its own callback group: it waits for a frame that the depth callback must deliver
        self._detect_srv = self.create_service(Trigger, '~/detect', self._on_detect,
                                               callback_group=MutuallyExclusiveCallbackGroup())

        self._worker = threading.Thread(target=self._work, name='grasp_detector_worker',
                                        daemon=True)
        self._worker.start()
        self._loader = threading.Thread(target=self._load_models, name='grasp_detector_loader',
                                        daemon=True)
        self._loader.start()
        self.get_logger().info(
            f"listening on '{self._depth_sub.topic_name}' and "
            f"'{self._info_sub.topic_name}' (model: "
            f"{'none' if self._backend is None else self._describe_backend(self._backend)})")

    # --- model and parameters -----------------------------------------------------------------

    def _load_backend(self, values):
        return build_backend(values)

    @staticmethod
    def _describe_backend(backend):
        scale = float(getattr(backend.config, 'metres_per_pixel', 0.0) or 0.0)
        scale_text = (f'trained at {1e3 * scale:.3f} mm per network pixel' if scale > 0 else
                      'no recorded training scale: scale_mode metric uses crop_size')
        width_scale = float(getattr(backend.config, 'width_scale', 1.0))
        if width_scale != 1.0:
            scale_text += f", widths read x {width_scale:g} (the model's width calibration)"
        prepare = ''
        if hasattr(backend, 'prepare_s'):
            int8 = getattr(backend, 'precision', '') == 'int8'
            made = 'exported and quantised' if int8 else 'exported'
            prepare = (f", {'int8 network' if int8 else 'export'} loaded from the cache"
                       if getattr(backend, 'cached', False)
                       else f', {made} on this start in {backend.prepare_s:.1f} s (cached '
                       'for the next)')
        choice = getattr(backend, 'choice', None)
        reason = f' ({choice.reason})' if choice is not None else ''
        threads = getattr(backend, 'threads', None)
        threads_text = f', {threads} threads' if threads else ''
        if getattr(getattr(backend, 'plan', None), 'cuda_graphs', False):
            threads_text += ', replaying a CUDA graph'
        if hasattr(backend, 'warmup_s'):
            prepare += f', warmed up in {1e3 * backend.warmup_s:.0f} ms'
        return (f"{backend.name} {getattr(backend, 'precision', 'fp32')} on {backend.device}"
                f'{threads_text}{reason}{prepare}, {scale_text}')

    def _on_set_parameters(self, parameters):
        changes = {p.name: p.value for p in parameters if p.name in PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        with self._lock:
            current, has_model = dict(self._values), self._backend is not None
        candidate = dict(current)
        candidate.update(changes)
        problem = validate_settings(candidate)
        if problem:
            self.get_logger().warning(f'parameter change rejected: {problem}')
            return SetParametersResult(successful=False, reason=problem)
        reload = any(name in changes and (changes[name] != current[name] or not has_model)
                     for name in MODEL_PARAMETERS)
        if reload:
            try:
                check_model(candidate)
            except Exception as exc:  # reject, keep the old model
                reason = (f"cannot load the grasp model '{model_file(candidate)}': {exc}; "
                          'keeping the current model')
                self.get_logger().error(f'parameter change rejected: {reason}')
                return SetParametersResult(successful=False, reason=reason)
        if changes.get('output_frame') and self._tf is None:
            try:
                self._tf = create_tf_lookup(self, candidate['tf_timeout'])
            except TransformError as exc:
                self.get_logger().warning(f'parameter change rejected: {exc}')
                return SetParametersResult(successful=False, reason=str(exc))
            self._tf_error = None
        if self._tf is not None:
            self._tf.timeout_s = float(candidate['tf_timeout'])
        with self._lock:
            self._values = candidate
            self._config = detector_config(candidate)
            if reload:  # loaded off the executor; the current model serves until the swap
                self._reload = dict(candidate)
                self._reload_wake.notify()
        described = ', '.join(f'{k}={v!r}' for k, v in changes.items())
        if reload:
            described += (f' (model {model_file(candidate)} loading in the background; the '
                          'current model serves until it is ready)')
        self.get_logger().info(f'parameters changed: {described}; applied from the next frame')
        return SetParametersResult(successful=True)

    def _load_models(self):
        """Loader thread: builds the backend of an accepted model change, then swaps it in."""
        while True:
            with self._reload_wake:
                while self._reload is None and not self._stopping:
                    self._reload_wake.wait()
                if self._stopping:
                    return
                values, self._reload = self._reload, None
            started = time.monotonic()
            try:
                backend = self._load_backend(values)
            except Exception as exc:  # checked before, so rare: keep the current model
                self.get_logger().error(
                    f"cannot load the grasp model '{model_file(values)}': {exc}; keeping the "
                    'current model')
                continue
            with self._lock:
                self._backend, self._model_error = backend, None
            if gc.get_freeze_count():  # main() froze the heap: the old model's objects go
                freeze_heap(refreeze=True)
            self.get_logger().info(
                f'grasp model loaded in {time.monotonic() - started:.1f} s: '
                f'{model_file(values)} ({self._describe_backend(backend)}), serving from the '
                'next frame')

    # --- callbacks: store the newest message only ---------------------------------------------

    def _on_depth(self, msg):
        received = time.perf_counter()
        with self._wake:
            requests, self._armed = self._armed, []
            if self._values['detection_mode'] == 'on_demand' and not requests:
                self._stats['ignored'] += 1  # nobody asked: no inference
                return
            if self._pending is not None:  # replaced by this newer frame, with its requests
                self._stats['skipped'] += 1
                requests = self._pending[2] + requests
            self._pending = (msg, received, requests)
            self._wake.notify()

    def _on_detect(self, _request, response):
        """``~/detect``: run the detector on the next depth frame and answer with a summary
        (waits up to ``detect_timeout`` s for that frame; the outputs are published as usual)."""
        request = DetectRequest()
        with self._lock:
            self._armed.append(request)
            timeout_s = float(self._values['detect_timeout'])
        if not request.done.wait(timeout_s):
            with self._lock:
                if request in self._armed:
                    self._armed.remove(request)
            response.success = False
            response.message = (f"no depth frame on '{self._depth_sub.topic_name}' processed "
                                 f'within detect_timeout ({timeout_s:g} s)')
            return response
        response.success, response.message = request.success, request.message
        return response

    def _on_camera_info(self, msg):
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            self._camera_info = msg
            self._camera_infos[key] = msg
            self._camera_infos.move_to_end(key)
            while len(self._camera_infos) > CAMERA_INFO_HISTORY:
                self._camera_infos.popitem(last=False)

    def _match_publishers(self):
        """Keep the subscriptions matched to the publishers (called periodically): camera_info
        latched or not, the depth image's reliability, and the colour image only while the
        overlay needs it."""
        self._match_camera_info_qos()
        self._depth_sub, self._depth_reliability = self._match_image_subscription(
            self._depth_sub, self._depth_reliability, 'depth', self._on_depth, True)
        with self._lock:
            values = self._values
        wanted = bool(values['use_color']) and (
            values['publish_debug_images'] or self._debug_pub.get_subscription_count() > 0)
        self._color_sub, self._color_reliability = self._match_image_subscription(
            self._color_sub, self._color_reliability, 'color', self._on_color, wanted)
        if self._color_sub is None:
            with self._lock:
                self._color_msg = None

    def _image_reliability(self, offered):
        """The reliability an image subscription should have now, for the reliabilities its
        publishers offer."""
        setting = self._values['image_reliability']
        if setting != 'auto':
            return setting
        return matching_reliability(offered)

    def _warn_incompatible_publishers(self, topic, reliability, offered):
        """Warn once each time more publishers of ``topic`` offer best effort to a reliable
        subscription (it receives nothing from them)."""
        incompatible = (sum(r == ReliabilityPolicy.BEST_EFFORT for r in offered)
                        if reliability == 'reliable' else 0)
        if incompatible > self._incompatible_publishers.get(topic, 0):
            self.get_logger().warning(
                f"{incompatible} publisher(s) of '{topic}' offer best-effort reliability: the "
                "reliable subscription (image_reliability 'reliable') receives nothing from "
                "them; set image_reliability to 'auto' or 'best_effort'")
        self._incompatible_publishers[topic] = incompatible

    def _match_image_subscription(self, subscription, reliability, name, callback, wanted):
        """Create, re-create (another reliability) or drop one image subscription.

        :returns: ``(subscription, reliability)``, both None when not wanted.
        """
        if not wanted:
            if subscription is not None:
                self.destroy_subscription(subscription)
            return None, None
        topic = (subscription.topic_name if subscription is not None
                 else self.resolve_topic_name(name))
        offered = [info.qos_profile.reliability
                   for info in self.get_publishers_info_by_topic(topic)]
        target = self._image_reliability(offered)
        self._warn_incompatible_publishers(topic, target, offered)
        if subscription is not None and target == reliability:
            return subscription, reliability
        if subscription is not None:
            self.destroy_subscription(subscription)
        subscription = self.create_subscription(Image, name, callback, image_qos(target),
                                                event_callbacks=NO_EVENT_HANDLERS)
        self.get_logger().info(f"subscribed to '{topic}' with {target} reliability"
                               + (' (as its publishers offer)'
                                  if self._values['image_reliability'] == 'auto' else ''))
        return subscription, target

    def _match_camera_info_qos(self):
        """Subscribe a second time with reliable + transient-local while a camera_info publisher
        offers it (so a camera_info published once, before this node matched, still arrives);
        drop that subscription when no such publisher is left."""
        topic = self._info_sub.topic_name
        latched = [info for info in self.get_publishers_info_by_topic(topic)
                   if info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                   and info.qos_profile.reliability == ReliabilityPolicy.RELIABLE]
        if latched and self._latched_info_sub is None:
            # other publishers on the topic are incompatible with it: expected, not worth a
            # warning (the best-effort subscription receives from them)
            self._latched_info_sub = self.create_subscription(
                CameraInfo, 'camera_info', self._on_camera_info, LATCHED_CAMERA_INFO_QOS,
                event_callbacks=NO_EVENT_HANDLERS)
            self.get_logger().info(
                f"a publisher of '{topic}' offers transient-local durability: subscribed "
                'with reliable + transient-local too')
        elif not latched and self._latched_info_sub is not None:
            self.destroy_subscription(self._latched_info_sub)
            self._latched_info_sub = None

    def _on_color(self, msg):
        with self._lock:
            self._color_msg = msg

    # --- worker -------------------------------------------------------------------------------

    def _work(self):
        while True:
            with self._wake:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                msg, received, requests = self._pending
                self._pending = None
            outcome = (False, 'the node is shutting down')
            try:
                outcome = self._process(msg, received)
            except Exception as exc:  # a frame must never kill the worker
                outcome = (False, f'frame failed unexpectedly: {exc!r}')
                if self._stopping or not self.context.ok():
                    return
                self._report('internal', f'frame failed unexpectedly: {exc!r}\n'
                             f'{traceback.format_exc()}', error=True)
            finally:
                for request in requests:
                    request.finish(*outcome)

    def _skip(self, key, text, error=False):
        """Report why a frame is skipped (see :meth:`_report`); the outcome of that frame."""
        self._report(key, text, error)
        return False, text

    def _report(self, key, text, error=False):
        """Log a per-frame problem; the same text again within WARN_THROTTLE_S is dropped."""
        now = time.monotonic()
        with self._lock:
            last = self._reported.get((key, text))
            if last is not None and now - last < WARN_THROTTLE_S:
                return
            self._reported[(key, text)] = now
        if error:
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def _process(self, msg, received):
        with self._lock:
            backend, config, values = self._backend, self._config, self._values
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            camera_info = self._camera_infos.get(stamp, self._camera_info)
            model_error = self._model_error
        described = f'depth frame {msg.width}x{msg.height} {msg.encoding!r}'
        if backend is None:
            return self._skip('model', f'{described} skipped: no grasp model loaded '
                              f'({model_error})', error=True)
        t0 = time.perf_counter()
        try:
            depth_m = depth_from_image(msg, values['depth_scale'])
        except DepthError as exc:
            return self._skip('decode', f'{described} skipped: {exc}')
        t1 = time.perf_counter()
        if camera_info is None:
            return self._skip('camera_info', f'{described} skipped: no camera_info received '
                              f"yet on '{self._info_sub.topic_name}'")
        try:
            intrinsics = intrinsics_from_camera_info(camera_info, values['depth_rectified'])
        except GeometryError as exc:
            return self._skip('camera_info',
                              f'{described} skipped: unusable camera_info: {exc}')
        info_frame = camera_info.header.frame_id
        try:
            detection = GraspDetector(backend, config).detect(depth_m, intrinsics)
        except (DepthError, GeometryError) as exc:
            return self._skip('detect', f'{described} skipped: {exc}')
        if detection.crop_clamped:
            self._report('scale', f'{described}: the metric crop of {detection.wanted_crop_px} '
                         f'px does not fit; clamped to {detection.transform.size} px, so objects '
                         'reach the network smaller than the model was trained on')
        t2 = time.perf_counter()
        grasps = detection.grasps_3d
        frame_id = msg.header.frame_id or info_frame
        output_frame = values['output_frame']
        if output_frame and output_frame != frame_id and self._tf is None:
            return self._skip('tf', f'{described} skipped: no grasps published, output_frame '
                              f"'{output_frame}' cannot be served: {self._tf_error}",
                              error=True)
        if output_frame and output_frame != frame_id:
            try:
                translation, rotation = self._tf.lookup(output_frame, frame_id,
                                                        msg.header.stamp)
            except TransformError as exc:
                return self._skip('tf', f'{described} skipped: {exc}')
            grasps = transform_grasps(grasps, translation, rotation)
            frame_id = output_frame
        gripper = gripper_config(values)
        grasps = apply_gripper(grasps, gripper,
                               DOWN_IN_OUTPUT_FRAME if output_frame else OPTICAL_AXIS)
        t3 = time.perf_counter()

        header = make_header(msg.header.stamp, frame_id)
        if grasps:
            self._best_pub.publish(grasp_to_pose_stamped(grasps[0], header))
        self._grasps_pub.publish(grasps_to_pose_array(grasps, header))
        self._details_pub.publish(grasps_to_cloud(grasps, header))
        self._markers_pub.publish(grasps_to_markers(
            grasps, header, closing_axis=gripper.closing_axis,
            approach_axis=gripper.approach_axis))
        self._publish_images(msg, depth_m, detection, values)
        t4 = time.perf_counter()

        stages = dict(detection.timings_ms, wait=(t0 - received) * 1e3, decode=(t1 - t0) * 1e3,
                      publish=(t4 - t3) * 1e3, total=(t4 - received) * 1e3)
        stages['projection'] = stages.get('projection', 0.0) + (t3 - t2) * 1e3  # + tf
        timings = {name: stages.get(name, 0.0) for name in LATENCY_STAGES}
        self._latency_pub.publish(latency_message(timings, header))
        with self._lock:
            self._reported.clear()
            self._stats['totals'].append(timings['total'])
        return True, grasp_summary(grasps, header)

    def _publish_images(self, msg, depth_m, detection, values):
        forced = values['publish_debug_images']
        height, width = depth_m.shape
        camera_header = make_header(msg.header.stamp, msg.header.frame_id)
        if forced or self._quality_pub.get_subscription_count() > 0:
            quality = quality_in_source(detection.maps.quality, detection.transform, width,
                                        height)
            self._quality_pub.publish(image_from_float(quality, camera_header))
        if forced or self._debug_pub.get_subscription_count() > 0:
            base = None
            with self._lock:
                color_msg = self._color_msg  # the newest, read after inference
            if color_msg is not None:
                if (color_msg.width, color_msg.height) != (width, height) or (
                        color_msg.header.frame_id != msg.header.frame_id):
                    self._report('color', 'colour image not registered to the depth image '
                                 f'({color_msg.width}x{color_msg.height} in '
                                 f"'{color_msg.header.frame_id}', depth {width}x{height} in "
                                 f"'{msg.header.frame_id}'): overlay drawn on the depth "
                                 'rendering; use a registered stream such as '
                                 'aligned_depth_to_color')
                else:
                    try:
                        base = rgb_from_image(color_msg)
                    except ImageError as exc:
                        self._report('color', f'colour image ignored for the overlay: {exc}')
            if base is None:
                base = depth_colormap(depth_m)
            self._debug_pub.publish(image_from_rgb(render_overlay(base, detection),
                                                   camera_header))

    def _log_stats(self):
        period = self._values['latency_log_period']
        now = time.monotonic()
        with self._lock:
            stats = self._stats
            if period <= 0 or now - stats['since'] < period:
                return
            totals = np.array(stats['totals'], dtype=np.float64)
            skipped, ignored = stats['skipped'], stats['ignored']
            elapsed = now - stats['since']
            stats['totals'].clear()
            stats['skipped'] = stats['ignored'] = 0
            stats['since'] = now
            was_quiet = stats['quiet']
            stats['quiet'] = totals.size == 0
        if totals.size == 0:
            if not was_quiet:
                waiting = (f'{ignored} frames received, on demand: waiting for a ~/detect call'
                           if ignored else f"waiting for '{self._depth_sub.topic_name}'")
                self.get_logger().info(
                    f'no frame processed in the last {elapsed:.1f} s ({waiting})')
            return
        p50, p99 = np.percentile(totals, [50.0, 99.0])
        self.get_logger().info(
            f'{totals.size} frames in {elapsed:.1f} s ({totals.size / elapsed:.2f} Hz), '
            f'receive-to-publish latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, '
            f'{skipped} frames skipped for newer ones')

    def destroy_node(self):
        """Stop the worker (after the frame in progress) and destroy the node; safe on a node
        whose constructor failed half-way."""
        threads = [t for t in (getattr(self, '_worker', None), getattr(self, '_loader', None))
                   if t is not None]
        if threads:
            with self._wake:
                self._stopping = True
                self._wake.notify_all()
                self._reload_wake.notify_all()
        for thread in threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=WORKER_JOIN_TIMEOUT_S)
        return super().destroy_node()


#: Errors of a start with unusable parameters: the reason is logged, the exit code is 1.
STARTUP_ERRORS = (StartupError, InvalidParameterTypeException, InvalidParameterValueException)


def freeze_heap(refreeze=False):
    """Collect garbage once, then exempt every surviving object from later collections.

    The imports, the runtime and the model leave some 200,000 long-lived Python objects, and
    each full collection the interpreter runs from time to time scans them all: 100-150 ms
    on a 2-core VM, which a frame that it falls into adds to its latency. Frozen
    (``gc.freeze``), they are not scanned again; objects made later are collected as usual.

    :param refreeze: unfreeze first (after a model change, so that the replaced model's
        objects can be collected).
    """
    if refreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def main(args=None):
    """Entry point of ``ros2 run grasp_fcn detector``.

    :returns: the process exit code: 0 after a normal shutdown, 1 when the node could not start
        (the reason is logged).
    """
    rclpy.init(args=args)
    node, code = None, 0
    try:
        node = GraspDetectorNode()
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        freeze_heap()  # started: what exists now lives as long as the process
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except STARTUP_ERRORS as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {exc}')
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
