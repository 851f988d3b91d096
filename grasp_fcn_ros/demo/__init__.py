"""The demo: the real ``grasp_detector`` node on bundled Cornell frames, over ROS 2.

Starts ``python -m grasp_fcn_ros.node`` with ``config/detector.yaml`` as a separate process,
publishes each frame's depth, camera_info and colour (one stamp, one frame_id), receives
``~/grasps``, ``~/grasp_details`` and ``~/best_grasp``, and writes per frame
``<output>/<frame>.png`` (depth, Q map, angle map, and the grasps the node published) and
``<output>/<frame>.json``. The Q and angle panels come from the same core detector run here
offline on the same depth, which also checks that node and library agree. The node is then
stopped with SIGINT and must exit cleanly.

:mod:`.player` runs the node and plays the frames to it; :mod:`.figures` writes what came back.
"""

import argparse
import os
import sys

import numpy as np

from ..resources import default_model_path, share_directory
from .figures import summary_line, write_frame
from .player import DemoError, node_parameters, node_session, sent_depth

#: Tolerances of the node-versus-offline comparison.
AGREE_PIXEL_TOL = 0.5
AGREE_QUALITY_TOL = 1e-3
AGREE_POSITION_TOL_M = 1e-3
#: Seed of the untrained checkpoint written when no trained model exists.
UNTRAINED_SEED = 0


# --- model --------------------------------------------------------------------------------------

def describe_model(path):
    """``(trained, text)``: whether a checkpoint holds trained weights, and its provenance."""
    from ..core.model import load_checkpoint

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
    from ..core.model import save_random_checkpoint

    return save_random_checkpoint(
        os.path.join(folder, 'untrained.pt'), UNTRAINED_SEED,
        {'seed': UNTRAINED_SEED,
         'note': 'random weights written by the demo; no trained model found'})


# --- frames and the check of the node against the library ---------------------------------------

def load_frames(folder):
    """The demo frames: list of ``(name, depth_m, rgb or None)`` in name order."""
    from ..core.depth import read_depth_image
    from ..training.dataset import find_samples

    samples, _ = find_samples(folder)
    if not samples:
        raise DemoError(f'no frames (<name>d.tiff with <name>cpos.txt) in {folder}')
    return [(sample.name, read_depth_image(sample.depth_path), sample.load_color())
            for sample in samples]


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


def play_frame(player, offline, values, args, frame, model_info):
    """Play one frame to the node, check its answer, write the figure and the JSON file.

    :returns: ``(summary line, agree, reason)``.
    """
    name, depth_m, rgb = frame
    depth_scale = float(values['depth_scale'])
    played = player.play_frame(name, depth_m, rgb, args.encoding, depth_scale, args.timeout)

    mine = offline.detect(sent_depth(depth_m, args.encoding, depth_scale), played.intrinsics)
    agree, reason = compare(played.grasps_3d, mine.grasps_3d)
    write_frame(args.output, frame, played, mine, agree, reason, args.encoding, model_info)
    line = summary_line(name, played.grasps_3d, played.answer, mine, agree, reason,
                        values['q_threshold'])
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

    from ..core.detector import GraspDetector
    from ..node import build_backend, detector_config

    offline_backend = build_backend(dict(values, model_path=model))
    print(f'runtime: {offline_backend.choice.describe()}')
    offline = GraspDetector(offline_backend, detector_config(values))

    log_path = os.path.join(args.output, 'node.log')
    failures = []
    with node_session(params_file, model, log_path, args.device) as player:
        for frame in frames:
            line, agree, reason = play_frame(player, offline, values, args, frame, model_info)
            print(line)
            if not agree:
                failures.append(f'{frame[0]}: {reason}')
        print(f'wrote {len(frames)} figures and JSON files to {args.output}')
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

