"""What both benchmarks share: the depth frames they send, the camera of those frames, latency
summaries, the model to run and a description of the machine."""

from dataclasses import replace
import glob
import os
import platform

import numpy as np

from ..resources import share_directory

#: frame_id of the frames sent.
FRAME_ID = 'camera_depth_optical_frame'

#: Encoding of the frames sent through the pipeline, as a depth camera sends them.
ENCODING = '16UC1'


def default_frames_dir():
    """The bundled demo frames (Cornell depth TIFFs)."""
    return os.path.join(share_directory(), 'demo', 'frames')


def load_frames(folder, limit, depth_scale=0.001):
    """Read up to ``limit`` depth images from a folder: Cornell ``*d.tiff`` (float metres) or
    any other of :data:`~grasp_fcn_ros.training.dataset.DEPTH_SUFFIXES` (``*d.png`` in units of
    ``depth_scale`` metres, ``*d.npy``).

    :raises FileNotFoundError: when the folder holds none.
    """
    from ..core.depth import read_depth_image
    from ..training.dataset import DEPTH_SUFFIXES

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


def intrinsics_for(depth_m):
    """Pinhole intrinsics of the bundled frames (the Cornell Kinect approximation), centred on
    an image of this size."""
    from ..core.geometry import CORNELL_INTRINSICS

    height, width = depth_m.shape
    return replace(CORNELL_INTRINSICS, cx=width / 2.0, cy=height / 2.0, width=width,
                   height=height)


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

    from ..core.devices import cpu_description, cpu_model

    info = {'platform': platform.platform(), 'python': platform.python_version(),
            'processor': cpu_model(), 'cpu': cpu_description(), 'cpu_count': os.cpu_count(),
            'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
            'numpy': np.__version__, 'opencv': cv2.__version__,
            'cuda': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for module in ('onnxruntime', 'openvino', 'nncf'):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    if hasattr(os, 'getloadavg'):
        info['load_average_1min'] = os.getloadavg()[0]
    return info


def resolve_model(model, tmp):
    """The checkpoint to time: a file, or ``random`` for seeded random weights written into
    the folder ``tmp``.

    :raises FileNotFoundError: when the file does not exist.
    """
    if model == 'random':
        from ..core.model import save_random_checkpoint

        return save_random_checkpoint(os.path.join(tmp, 'random.pt'))
    if not os.path.isfile(model):
        raise FileNotFoundError(f'model file not found: {model} (train one, or pass '
                                '--model random to time the network with random weights)')
    return model
