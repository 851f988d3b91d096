"""``grasp-fcn bench``: per-stage latency of the detection pipeline, per backend and device.

In-process mode times the code path of the node on real depth frames: each frame is encoded
once into a ``sensor_msgs/Image`` (16UC1 millimetres, as a depth camera sends it), then for every
timed frame the message is decoded (:func:`~grasp_fcn_ros.ros_conversions.depth_from_image`),
run through :class:`~grasp_fcn_ros.core.detector.GraspDetector` (preprocess with inpainting,
inference, post-processing, projection) and turned into the messages the node publishes every
frame (PoseArray, PoseStamped, PointCloud2, MarkerArray). Backends are interleaved frame by
frame, so a load that changes during the run affects them alike.

``--ros`` mode starts the real node (``python -m grasp_fcn_ros.node``) in its own process,
publishes the frames at ``--rate`` Hz and measures what a subscriber sees: round-trip latency
(depth stamp to receipt of ``~/grasps``), the node's own receive-to-publish latency (its
``~/latency`` topic) and dropped frames.
"""

from dataclasses import replace
import glob
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

from .resources import fastdds_shm_profile_path, share_directory
from .spinning import spin_until

FRAME_ID = 'camera_depth_optical_frame'
#: Stages of one in-process frame, in pipeline order.
STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'projection', 'messages')
#: Backend every speed-up is reported against.
REFERENCE = 'torch@cpu'


def default_frames_dir():
    """The bundled demo frames (Cornell depth TIFFs)."""
    return os.path.join(share_directory(), 'demo', 'frames')


def load_frames(folder, limit, depth_scale=0.001):
    """Read up to ``limit`` depth images from a folder: Cornell ``*d.tiff`` (float metres) or
    any other of :data:`~grasp_fcn_ros.training.dataset.DEPTH_SUFFIXES` (``*d.png`` in units of
    ``depth_scale`` metres, ``*d.npy``).

    :raises FileNotFoundError: when the folder holds none.
    """
    from .core.depth import read_depth_image
    from .training.dataset import DEPTH_SUFFIXES

    paths = sorted({path for suffix in DEPTH_SUFFIXES
                    for path in glob.glob(os.path.join(folder, '**', f'*{suffix}'),
                                          recursive=True)})
    if not paths:
        raise FileNotFoundError(f'no depth frames (*{", *".join(DEPTH_SUFFIXES)}) under '
                                f'{folder}')
    return [read_depth_image(path, depth_scale) for path in paths[:max(int(limit), 1)]]


#: Depth step between neighbouring pixels, metres, above which ``--holes edges`` marks both
#: sides invalid.
EDGE_STEP_M = 0.01


def edge_holes(depth_m, step_m=EDGE_STEP_M):
    """The frame with the pixels around depth discontinuities set invalid (0).

    The bundled Cornell frames are already inpainted; real depth cameras leave holes along
    object edges (occlusion shadows), and the node inpaints them on every frame. This puts such
    holes back so that the benchmark times the inpainting too.

    :param depth_m: depth image, metres.
    :returns: ``(depth with holes, invalid fraction)``.
    """
    import cv2

    depth_m = np.asarray(depth_m, dtype=np.float32)
    grad_y, grad_x = np.gradient(np.nan_to_num(depth_m))
    edges = (np.hypot(grad_x, grad_y) > step_m).astype(np.uint8)
    edges = cv2.dilate(edges, np.ones((3, 3), np.uint8)).astype(bool)
    out = depth_m.copy()
    out[edges] = 0.0
    return out, float(edges.mean())


#: Encoding of the frames sent through the pipeline, as a depth camera sends them.
ENCODING = '16UC1'


def intrinsics_for(depth_m):
    """Pinhole intrinsics of the bundled frames (the Cornell Kinect approximation), centred on
    an image of this size."""
    from .core.geometry import CORNELL_INTRINSICS

    height, width = depth_m.shape
    return replace(CORNELL_INTRINSICS, cx=width / 2.0, cy=height / 2.0, width=width,
                   height=height)


class MessagePath:
    """The node's message side: decoding a depth Image and building the output messages.

    Uses :mod:`grasp_fcn_ros.ros_conversions` when the ROS 2 message packages are importable;
    otherwise decodes plain buffers with :func:`~grasp_fcn_ros.core.depth.decode_depth` and
    builds no messages (:attr:`note` says so).
    """

    def __init__(self):
        try:
            from . import ros_conversions
        except ImportError as exc:
            self.conversions = None
            self.note = f'messages not built (ROS 2 message packages not importable: {exc})'
        else:
            self.conversions = ros_conversions
            self.note = None

    @property
    def builds_messages(self):
        return self.conversions is not None

    def encode(self, depth_m):
        """An Image-like message of a depth frame (:data:`ENCODING`, millimetres), built once
        per frame."""
        if self.conversions is not None:
            header = types.SimpleNamespace(stamp=types.SimpleNamespace(sec=0, nanosec=0),
                                           frame_id=FRAME_ID)
            return self.conversions.image_from_depth(depth_m, header, ENCODING)
        from .core.depth import encode_depth

        pixels = encode_depth(depth_m, ENCODING)
        height, width = pixels.shape
        return types.SimpleNamespace(data=pixels.tobytes(), height=height, width=width,
                                     encoding=ENCODING, step=pixels.strides[0],
                                     is_bigendian=0)

    def decode(self, msg):
        if self.conversions is not None:
            return self.conversions.depth_from_image(msg)
        from .core.depth import decode_depth

        return decode_depth(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                            bool(msg.is_bigendian))

    def build(self, grasps, header):
        """The messages the node publishes for every frame (none without ROS 2)."""
        if self.conversions is None:
            return []
        c = self.conversions
        messages = [c.grasps_to_pose_array(grasps, header), c.grasps_to_cloud(grasps, header),
                    c.grasps_to_markers(grasps, header)]
        if grasps:
            messages.append(c.grasp_to_pose_stamped(grasps[0], header))
        return messages


def summarise(values_ms):
    """p50 / p99 / max / mean of a list of milliseconds."""
    values = np.asarray(values_ms, dtype=np.float64)
    if values.size == 0:
        return {'p50': None, 'p99': None, 'max': None, 'mean': None}
    return {'p50': float(np.percentile(values, 50)), 'p99': float(np.percentile(values, 99)),
            'max': float(values.max()), 'mean': float(values.mean())}


def machine_info():
    """Hardware and library versions, and the load on the machine (a busy CPU skews times)."""
    import cv2
    import torch

    info = {'platform': platform.platform(), 'python': platform.python_version(),
            'processor': _cpu_name(), 'cpu_count': os.cpu_count(),
            'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
            'numpy': np.__version__, 'opencv': cv2.__version__,
            'cuda': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for module in ('onnxruntime', 'openvino'):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    if hasattr(os, 'getloadavg'):
        info['load_average_1min'] = os.getloadavg()[0]
    return info


def _cpu_name():
    try:
        with open('/proc/cpuinfo') as stream:
            for line in stream:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def _runtime_available(backend):
    module = {'onnxruntime': 'onnxruntime', 'openvino': 'openvino'}.get(backend)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def bench_targets(backends, device):
    """The (backend, device) pairs to time, and notes on the ones left out.

    ``device`` ``auto`` means the CPU, plus CUDA for the backends that can use it when a GPU
    is present; ``cpu`` or ``cuda`` pin one device.

    :param backends: backend names, or ``['all']``.
    :returns: ``(targets, notes)``.
    """
    import torch

    from .core.backends import BACKENDS
    from .core.devices import resolve_device

    names = list(BACKENDS) if list(backends) == ['all'] else list(backends)
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)} "
                         f"(expected {', '.join(BACKENDS)} or all)")
    device = str(device).lower()
    if device == 'auto':
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    else:
        devices = [resolve_device(device)]
    targets, notes = [], []
    for name in names:
        if not _runtime_available(name):
            notes.append(f'{name}: runtime not installed, skipped')
            continue
        for dev in devices:
            if dev.startswith('cuda') and name == 'openvino':
                notes.append('openvino: CPU only, not timed on CUDA')
                continue
            if dev.startswith('cuda') and name == 'onnxruntime':
                import onnxruntime
                if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
                    notes.append('onnxruntime: no CUDAExecutionProvider, not timed on CUDA')
                    continue
            targets.append((name, dev))
    return targets, notes


def _resolve_model(model, tmp):
    if model == 'random':
        from .core.model import save_random_checkpoint

        return save_random_checkpoint(os.path.join(tmp, 'random.pt'))
    if not os.path.isfile(model):
        raise FileNotFoundError(f'model file not found: {model} (train one, or pass '
                                '--model random to time the network with random weights)')
    return model


def _synchronize(device):
    if device.startswith('cuda'):
        import torch
        torch.cuda.synchronize(device)


def backend_options(backend, threads):
    """Options that limit a backend to ``threads`` CPU threads (0 = the runtime's default)."""
    if not threads or backend not in ('onnxruntime', 'openvino'):
        return {}
    return {'threads': int(threads)}


def limit_threads(threads):
    """Limit PyTorch and OpenCV to ``threads`` threads in this process (0 = leave them)."""
    if threads:
        import cv2
        import torch

        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))


def run_pipeline_bench(model_path, frames, targets, num_frames, warmup, detector_config,
                       progress=None, threads=0):
    """Time the node's per-frame pipeline for every (backend, device), interleaved.

    :param model_path: checkpoint.
    :param frames: depth images in metres, cycled.
    :param targets: (backend, device) pairs.
    :param num_frames: timed frames per target.
    :param warmup: untimed frames per target before timing.
    :param detector_config: :class:`~grasp_fcn_ros.core.detector.DetectorConfig`.
    :param progress: a tqdm-like callable, or None.
    :param threads: CPU threads per backend (0 = each runtime's default, all cores).
    :returns: ``{'backend@device': {stage: summary, ..., 'e2e': summary, 'fps': ...}}``.
    """
    from .core.backends import create_backend
    from .core.detector import GraspDetector

    path = MessagePath()
    messages = [path.encode(depth) for depth in frames]
    intrinsics = [intrinsics_for(depth) for depth in frames]
    detectors, load_s = {}, {}
    for backend, device in targets:
        start = time.perf_counter()
        model = create_backend(model_path, backend, device, **backend_options(backend, threads))
        detectors[(backend, device)] = GraspDetector(model, detector_config)
        load_s[(backend, device)] = time.perf_counter() - start
    times = {key: {stage: [] for stage in STAGES + ('e2e', 'e2e_cpu')} for key in detectors}
    grasp_counts = {key: [] for key in detectors}
    total = (warmup + num_frames) * len(detectors)
    bar = progress(total=total, desc='bench', unit='frame') if progress else None
    for i in range(warmup + num_frames):
        index = i % len(frames)
        msg = messages[index]
        for key, detector in detectors.items():
            device = key[1]
            _synchronize(device)
            c0, t0 = time.process_time(), time.perf_counter()
            depth_m = path.decode(msg)
            t1 = time.perf_counter()
            detection = detector.detect(depth_m, intrinsics[index])
            t2 = time.perf_counter()
            path.build(detection.grasps_3d, getattr(msg, 'header', None))
            _synchronize(device)
            t3, c3 = time.perf_counter(), time.process_time()
            if i >= warmup:
                record = times[key]
                record['decode'].append((t1 - t0) * 1e3)
                for stage in detector.STAGES:
                    record[stage].append(detection.timings_ms[stage])
                record['messages'].append((t3 - t2) * 1e3)
                record['e2e'].append((t3 - t0) * 1e3)
                record['e2e_cpu'].append((c3 - c0) * 1e3)
                grasp_counts[key].append(len(detection.grasps_3d))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    results = {}
    for (backend, device), record in times.items():
        entry = {'backend': backend, 'device': device}
        for stage, values in record.items():
            entry[stage] = summarise(values)
        if not path.builds_messages:
            entry['messages'] = None
        mean_ms = entry['e2e']['mean']
        entry['fps'] = 1e3 / mean_ms if mean_ms else None
        entry['fps_p50'] = 1e3 / entry['e2e']['p50'] if mean_ms else None
        infer = entry['inference']['mean']
        entry['overhead_pct'] = 100.0 * (mean_ms - infer) / mean_ms if mean_ms else None
        entry['grasps_mean'] = float(np.mean(grasp_counts[(backend, device)]))
        entry['load_s'] = load_s[(backend, device)]
        results[f'{backend}@{device}'] = entry
    reference = results.get(REFERENCE)
    for entry in results.values():
        entry['fps_ratio_vs_torch'] = (entry['fps'] / reference['fps']
                                       if reference and reference['fps'] else None)
        entry['inference_ratio_vs_torch'] = (
            reference['inference']['p50'] / entry['inference']['p50']
            if reference and entry['inference']['p50'] else None)
        entry['cpu_ratio_vs_torch'] = (
            reference['e2e_cpu']['p50'] / entry['e2e_cpu']['p50']
            if reference and entry['e2e_cpu']['p50'] else None)
    return results, path.note


def format_table(results):
    """A fixed-width table of p50 stage times, end-to-end p50/p99/max, fps and speed-up."""
    stage_cols = [s[:7] for s in STAGES]
    head = (f"{'backend@device':26s}" + ''.join(f'{c:>8s}' for c in stage_cols)
            + f"{'e2e p50':>9s}{'p99':>8s}{'max':>8s}{'fps':>7s}{'x torch':>8s}{'ovh %':>7s}"
            + f"{'cpu p50':>9s}{'x cpu':>7s}")
    lines = ['p50 per stage and end to end, milliseconds (fps: 1000 / mean e2e; x torch: fps '
             'over torch@cpu; ovh: share of e2e outside inference; cpu: process CPU time '
             'per frame, all threads)', head, '-' * len(head)]

    def ms(summary):
        return '       -' if not summary or summary['p50'] is None else f"{summary['p50']:8.1f}"

    for key, entry in results.items():
        e2e = entry['e2e']
        ratio = entry.get('fps_ratio_vs_torch')
        lines.append(
            f'{key:26s}' + ''.join(ms(entry[s]) for s in STAGES)
            + f"{e2e['p50']:9.1f}{e2e['p99']:8.1f}{e2e['max']:8.1f}{entry['fps']:7.2f}"
            + (f'{ratio:8.2f}' if ratio else '       -') + f"{entry['overhead_pct']:7.1f}"
            + f"{entry['e2e_cpu']['p50']:9.1f}"
            + (f"{entry['cpu_ratio_vs_torch']:7.2f}" if entry.get('cpu_ratio_vs_torch')
               else '      -'))
    return '\n'.join(lines)


def run_bench(args):
    """``grasp-fcn bench``: run the in-process or the ``--ros`` benchmark (see the module doc).

    :param args: the parsed ``bench`` arguments.
    :returns: the process exit status.
    """
    from .options import detector_config, progress_bar

    if args.frames < 1 or args.warmup < 0:
        raise ValueError('--frames must be >= 1 and --warmup >= 0')
    folder = args.dataset or default_frames_dir()
    frames = load_frames(folder, args.frames + args.warmup, getattr(args, 'depth_scale', 0.001))
    invalid = [0.0] * len(frames)
    if args.holes == 'edges':
        frames, invalid = zip(*(edge_holes(depth) for depth in frames))
    args.invalid_fraction = float(np.mean(invalid))
    backends = [b.strip() for b in args.backends.split(',') if b.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        model_path = _resolve_model(args.model, tmp)
        if args.ros:
            return run_ros_bench(args, model_path, frames, backends)
        targets, notes = bench_targets(backends, args.device)
        if not targets:
            raise RuntimeError('no backend to time: ' + '; '.join(notes))
        machine = machine_info()
        limit_threads(args.threads)
        results, note = run_pipeline_bench(model_path, frames, targets, args.frames, args.warmup,
                                           detector_config(args), progress_bar(), args.threads)
    if note:
        notes.append(note)
    machine['load_average_1min_after'] = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    print(format_table(results))
    print(f'{args.frames} frames (+{args.warmup} warm-up) from {folder}, '
          f'{len(frames)} distinct, {ENCODING}, holes: {args.holes} '
          f'({100 * args.invalid_fraction:.1f} % invalid pixels); model {args.model}')
    for line in notes:
        print(f'note: {line}')
    load = machine.get('load_average_1min')
    if load is not None and load > (os.cpu_count() or 1) * 0.5:
        print(f'note: load average {load:.1f} on {os.cpu_count()} CPUs: other processes '
              'compete with the benchmark, times are inflated')
    report = {'mode': 'pipeline', 'machine': machine,
              'settings': {'frames': args.frames, 'warmup': args.warmup, 'dataset': folder,
                           'distinct_frames': len(frames), 'model': args.model,
                           'encoding': ENCODING, 'holes': args.holes,
                           'invalid_fraction': args.invalid_fraction,
                           'crop_size_px': args.crop_size,
                           'q_threshold': args.q_threshold, 'max_grasps': args.max_grasps,
                           'threads': args.threads,
                           'stages': list(STAGES), 'reference': REFERENCE},
              'notes': notes, 'backends': results}
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(report, stream, indent=2)
        print(f'wrote {args.json}')
    return 0


# --- over ROS 2 ---------------------------------------------------------------------------------

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
    """Command line that starts the detector node with a backend."""
    params = {'model_path': model_path, 'backend': backend, 'device': device}
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

        from .ros_conversions import (
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
    """``bench --ros``: one node process per backend, frames published at ``--rate`` Hz."""
    from .core.backends import BACKENDS

    names = list(BACKENDS) if backends == ['all'] else backends
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
            if not _runtime_available(backend):
                notes.append(f'{backend}: runtime not installed, skipped')
                continue
            log = tempfile.TemporaryFile(mode='w+')
            process = subprocess.Popen(node_command(model_path, backend, args.device), env=env,
                                       stdout=log, stderr=subprocess.STDOUT, text=True)
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
                           'transport': args.transport, 'domain_id': env['ROS_DOMAIN_ID']},
              'notes': notes, 'backends': results}
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(report, stream, indent=2)
        print(f'wrote {args.json}')
    return 0 if results else 1


def format_ros_table(results):
    """Table of the ``--ros`` results: round trip and the node's total latency."""
    head = (f"{'backend':22s}{'sent':>6s}{'recv':>6s}{'drop':>6s}{'rt p50':>9s}{'rt p99':>9s}"
            f"{'node p50':>10s}{'node p99':>10s}")
    lines = ['over ROS 2, milliseconds (rt: depth publish to grasps receipt; node: its '
             'receive-to-publish latency)', head, '-' * len(head)]

    def ms(value):
        return f'{value:9.1f}' if value is not None else '        -'

    for backend, entry in results.items():
        total = entry['node_latency'].get('total', {'p50': None, 'p99': None})
        lines.append(f"{backend:22s}{entry['published']:6d}{entry['received']:6d}"
                     f"{entry['dropped']:6d}{ms(entry['round_trip']['p50'])}"
                     f"{ms(entry['round_trip']['p99'])} {ms(total['p50'])} {ms(total['p99'])}")
    return '\n'.join(lines)
