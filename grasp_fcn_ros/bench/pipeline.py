"""``grasp-fcn bench`` in process: per-stage latency of the node's code path on real depth
frames, per backend, precision and device.

Each frame is encoded once into a ``sensor_msgs/Image`` (16UC1 millimetres, as a depth camera
sends it), then for every timed frame the message is decoded
(:func:`~grasp_fcn_ros.ros_conversions.depth_from_image`), run through
:class:`~grasp_fcn_ros.core.detector.GraspDetector` (preprocess with inpainting, inference,
post-processing, projection) and turned into the messages the node publishes every frame
(PoseArray, PoseStamped, PointCloud2, MarkerArray). Backends are interleaved frame by frame, so
a load that changes during the run affects them alike.
"""

import json
import os
import time
import types

import numpy as np

from .common import (
    ENCODING,
    FRAME_ID,
    intrinsics_for,
    machine_info,
    summarise,
)

#: Stages of one in-process frame, in pipeline order.
STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'projection', 'messages')
#: Runtime every speed-up is reported against: eager PyTorch in fp32.
REFERENCE = 'torch:fp32@cpu'


def target_key(backend, device, precision):
    """A runtime's name in the tables and the report: ``backend:precision@device``."""
    return f'{backend}:{precision}@{device}'


class MessagePath:
    """The node's message side: decoding a depth Image and building the output messages.

    Uses :mod:`grasp_fcn_ros.ros_conversions` when the ROS 2 message packages are importable;
    otherwise decodes plain buffers with :func:`~grasp_fcn_ros.core.depth.decode_depth` and
    builds no messages (:attr:`note` says so).
    """

    def __init__(self):
        try:
            from .. import ros_conversions
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
        from ..core.depth import encode_depth

        pixels = encode_depth(depth_m, ENCODING)
        height, width = pixels.shape
        return types.SimpleNamespace(data=pixels.tobytes(), height=height, width=width,
                                     encoding=ENCODING, step=pixels.strides[0],
                                     is_bigendian=0)

    def decode(self, msg):
        if self.conversions is not None:
            return self.conversions.depth_from_image(msg)
        from ..core.depth import decode_depth

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


def _parse_spec(spec):
    backend, _, precision = spec.strip().partition(':')
    return backend, precision or 'fp32'


def bench_targets(backends, device, flags=None):
    """The (backend, device, precision) runtimes to time, the one ``auto`` chooses, and notes
    on the ones left out.

    ``backends`` items are ``backend[:precision]`` (fp32 when not given) or ``auto``; ``all``
    means every installed backend in fp32, plus each reduced precision this machine runs
    natively (bf16 where the CPU has AMX or AVX512-BF16, fp16 on CUDA), int8 through OpenVINO
    when NNCF is installed, and ``auto``. ``device`` ``auto`` means the CPU, plus CUDA for the
    backends that can use it when a GPU is present; ``cpu`` or ``cuda`` pin one device.

    :param backends: runtime specs, or ``['all']``.
    :param flags: CPU flags (default: this machine's).
    :returns: ``(targets, auto_target, notes)``; ``auto_target`` is None when ``auto`` was
        not asked for.
    """
    import torch

    from ..core.devices import native_bf16, resolve_device
    from ..core.model import ModelError
    from ..core.runtime import BACKENDS, choose_runtime, nncf_installed, runtime_installed

    if list(backends) == ['all']:
        specs = [f'{name}:fp32' for name in BACKENDS]
        if native_bf16(flags):
            specs += ['torch-channels-last:bf16', 'openvino:bf16']
        if nncf_installed():
            specs.append('openvino:int8')
        specs.append('auto')
    else:
        specs = list(backends)
    unknown = [s for s in specs if s != 'auto' and _parse_spec(s)[0] not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)} "
                         f"(expected {', '.join(BACKENDS)}, with an optional :precision, "
                         'auto, or all)')
    device = str(device).lower()
    if device == 'auto':
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    else:
        devices = [resolve_device(device)]
    targets, notes, auto_target = [], [], None
    if 'auto' in specs:
        choice = choose_runtime('auto', 'auto', devices[-1], flags=flags)
        auto_target = (choice.backend, choice.device, choice.precision)
        notes.append(f'auto chooses {target_key(*auto_target)}: {choice.reason}')
        if list(backends) == ['all'] and devices[-1].startswith('cuda'):
            specs.append('torch:fp16')
        specs = [s for s in specs if s != 'auto']
        specs.append(f'{choice.backend}:{choice.precision}')
    for spec in specs:
        name, precision = _parse_spec(spec)
        if not runtime_installed(name):
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
            try:
                choice = choose_runtime(name, precision, dev, flags=flags)
            except ModelError as exc:
                notes.append(f'{spec} on {dev}: {exc}')
                continue
            target = (choice.backend, choice.device, choice.precision)
            if choice.precision != precision:
                notes.append(f'{spec} on {dev}: {choice.reason}')
            if target not in targets:
                targets.append(target)
    return targets, auto_target, notes


def _synchronize(device):
    if device.startswith('cuda'):
        import torch
        torch.cuda.synchronize(device)


def backend_options(backend, threads, precision='fp32', device='cpu'):
    """Options that limit a backend to ``threads`` CPU threads (0 = the runtime's default),
    the bundled real frames as int8 calibration, and PyTorch on CUDA with a captured CUDA
    graph, as ``backend: auto`` runs it there."""
    options = {}
    if backend == 'torch' and str(device).startswith('cuda'):
        options['cuda_graphs'] = True
    if threads and backend in ('onnxruntime', 'openvino'):
        options['threads'] = int(threads)
    if precision == 'int8':
        from ..resources import default_calibration_dir
        options['calibration'] = default_calibration_dir()
    return options


def limit_threads(threads):
    """Limit PyTorch and OpenCV to ``threads`` threads in this process (0 = leave them)."""
    if threads:
        import cv2
        import torch

        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))


def run_pipeline_bench(model_path, frames, targets, num_frames, warmup, detector_config,
                       progress=None, threads=0, mirror=False):
    """Time the node's per-frame pipeline for every (backend, device, precision), interleaved.

    :param model_path: checkpoint.
    :param frames: depth images in metres, cycled.
    :param targets: (backend, device, precision) runtimes.
    :param num_frames: timed frames per target.
    :param warmup: untimed frames per target before timing.
    :param detector_config: :class:`~grasp_fcn_ros.core.detector.DetectorConfig`.
    :param progress: a tqdm-like callable, or None.
    :param threads: CPU threads per backend (0 = each runtime's default, all cores).
    :param mirror: run every network on the frame and its mirror image, as the node's
        ``test_time_mirror`` does (:class:`~grasp_fcn_ros.core.ensemble.AveragedBackend`).
    :returns: ``{'backend:precision@device': {stage: summary, ..., 'e2e': summary, 'fps': ...,
        'load_s': seconds to build the backend, 'prepare_s': of which export and
        quantisation}}``.
    """
    from ..core.backends import create_backend
    from ..core.detector import GraspDetector
    from ..core.ensemble import AveragedBackend

    path = MessagePath()
    messages = [path.encode(depth) for depth in frames]
    intrinsics = [intrinsics_for(depth) for depth in frames]
    detectors, load_s = {}, {}
    prepare_s = {}
    for target in targets:
        backend, device, precision = target
        start = time.perf_counter()
        model = create_backend(model_path, backend, device, precision,
                               **backend_options(backend, threads, precision, device))
        if mirror:
            model = AveragedBackend([model], mirror=True)
        detectors[target] = GraspDetector(model, detector_config)
        load_s[target] = time.perf_counter() - start
        prepare_s[target] = getattr(model, 'prepare_s', None)
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
    for (backend, device, precision), record in times.items():
        key = (backend, device, precision)
        entry = {'backend': backend, 'device': device, 'precision': precision}
        for stage, values in record.items():
            entry[stage] = summarise(values)
        if not path.builds_messages:
            entry['messages'] = None
        mean_ms = entry['e2e']['mean']
        entry['fps'] = 1e3 / mean_ms if mean_ms else None
        entry['fps_p50'] = 1e3 / entry['e2e']['p50'] if mean_ms else None
        infer = entry['inference']['mean']
        entry['overhead_pct'] = 100.0 * (mean_ms - infer) / mean_ms if mean_ms else None
        entry['grasps_mean'] = float(np.mean(grasp_counts[key]))
        entry['load_s'] = load_s[key]
        entry['prepare_s'] = prepare_s[key]
        results[target_key(*key)] = entry
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
    head = (f"{'backend:precision@device':31s}" + ''.join(f'{c:>8s}' for c in stage_cols)
            + f"{'e2e p50':>9s}{'p99':>8s}{'max':>8s}{'fps':>7s}{'x torch':>8s}{'ovh %':>7s}"
            + f"{'cpu p50':>9s}{'x cpu':>7s}")
    lines = ['p50 per stage and end to end, milliseconds (fps: 1000 / mean e2e; x torch: fps '
             f'over {REFERENCE}; ovh: share of e2e outside inference; cpu: process CPU time '
             'per frame, all threads; *: what backend and precision auto choose)', head,
             '-' * len(head)]

    def ms(summary):
        return '       -' if not summary or summary['p50'] is None else f"{summary['p50']:8.1f}"

    for key, entry in results.items():
        e2e = entry['e2e']
        ratio = entry.get('fps_ratio_vs_torch')
        lines.append(
            f"{key + (' *' if entry.get('auto') else ''):31s}"
            + ''.join(ms(entry[s]) for s in STAGES)
            + f"{e2e['p50']:9.1f}{e2e['p99']:8.1f}{e2e['max']:8.1f}{entry['fps']:7.2f}"
            + (f'{ratio:8.2f}' if ratio else '       -') + f"{entry['overhead_pct']:7.1f}"
            + f"{entry['e2e_cpu']['p50']:9.1f}"
            + (f"{entry['cpu_ratio_vs_torch']:7.2f}" if entry.get('cpu_ratio_vs_torch')
               else '      -'))
    return '\n'.join(lines)


def run_in_process(args, model_path, frames, backends, folder):
    """``grasp-fcn bench`` without ``--ros``: time every (backend, device), print the table and
    write the JSON report.

    :param args: the parsed ``bench`` arguments.
    :param model_path: checkpoint.
    :param frames: depth images in metres, holes included.
    :param backends: backend names, or ``['all']``.
    :param folder: where the frames came from (for the report).
    :returns: the process exit status.
    """
    from ..options import detector_config, progress_bar

    targets, auto_target, notes = bench_targets(backends, args.device)
    if not targets:
        raise RuntimeError('no backend to time: ' + '; '.join(notes))
    machine = machine_info()
    limit_threads(args.threads)
    results, note = run_pipeline_bench(model_path, frames, targets, args.frames, args.warmup,
                                       detector_config(args), progress_bar(), args.threads,
                                       args.mirror)
    if note:
        notes.append(note)
    if auto_target is not None and target_key(*auto_target) in results:
        results[target_key(*auto_target)]['auto'] = True
    machine['load_average_1min_after'] = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    print(format_table(results))
    print(f"CPU: {machine['cpu']}")
    print(f'{args.frames} frames (+{args.warmup} warm-up) from {folder}, '
          f'{len(frames)} distinct, {ENCODING}, holes: {args.holes} '
          f'({100 * args.invalid_fraction:.1f} % invalid pixels); model {args.model}'
          + (' with the mirrored view (two network passes a frame)' if args.mirror else ''))
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
                           'threads': args.threads, 'mirror': args.mirror,
                           'stages': list(STAGES), 'reference': REFERENCE},
              'notes': notes, 'backends': results}
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(report, stream, indent=2)
        print(f'wrote {args.json}')
    return 0
