"""``grasp-fcn bench``: per-stage latency of the detection pipeline, per backend and device.

Two modes share the frames, the model and the report's summaries (:mod:`.common`):

- in process (:mod:`.pipeline`): the node's per-frame code path timed in this process;
- ``--ros`` (:mod:`.ros`): the real node in its own process, timed from outside over ROS 2.
"""

import tempfile

import numpy as np

from .common import default_frames_dir, edge_holes, load_frames, resolve_model
from .pipeline import run_in_process
from .ros import run_ros_bench


def run_bench(args):
    """``grasp-fcn bench``: run the in-process or the ``--ros`` benchmark (see the module doc).

    :param args: the parsed ``bench`` arguments.
    :returns: the process exit status.
    """
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
        model_path = resolve_model(args.model, tmp)
        if args.ros:
            return run_ros_bench(args, model_path, frames, backends)
        return run_in_process(args, model_path, frames, backends, folder)
