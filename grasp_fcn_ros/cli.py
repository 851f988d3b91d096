"""``grasp-fcn``: offline work with the grasp network (detect, train, eval, bench, export)."""

import argparse
import json
import os
import sys

from .core.devices import PRECISIONS
from .core.geometry import CORNELL_INTRINSICS
from .core.model import HEAD_BN_MIN_SCALE
from .core.scale import SCALE_MODES, SCENE_DEPTH_STATISTICS
from .options import detector_config, progress_bar
from .resources import default_calibration_dir, default_model_path


def _backend(args, backend=None, precision=None, log=True):
    from .core.backends import create_backend

    backend = backend or getattr(args, 'backend', 'auto')
    precision = precision or getattr(args, 'precision', 'auto')
    options = {}
    if backend in ('auto', 'openvino') and precision in ('auto', 'int8'):
        options = {'calibration': getattr(args, 'calibration', None) or default_calibration_dir()}
    result = create_backend(args.model, backend, args.device, precision, **options)
    if log:
        print(f'runtime: {result.choice.describe()}', file=sys.stderr)
    extra = getattr(args, 'ensemble', None) or []
    if extra or getattr(args, 'mirror', False):
        from .core.ensemble import AveragedBackend

        members = [result] + [create_backend(path, backend, args.device, precision, **options)
                              for path in extra]
        result = AveragedBackend(members, mirror=args.mirror)
        if log:
            print(f'test-time averaging: {result.describe()}', file=sys.stderr)
    return result


def _detector(args):
    from .core.detector import GraspDetector

    return GraspDetector(_backend(args), detector_config(args))


def _add_model_args(parser, backend=True):
    parser.add_argument('--model', default=default_model_path(),
                        help='checkpoint (default: the packaged model)')
    parser.add_argument('--device', default='auto', help='auto, cpu or cuda')
    if backend:
        from .core.runtime import BACKEND_CHOICES, PRECISION_CHOICES
        parser.add_argument('--backend', default='auto', choices=BACKEND_CHOICES,
                            help='inference runtime (auto: PyTorch on CUDA, else OpenVINO '
                            'when installed, else channels-last PyTorch)')
        parser.add_argument('--precision', default='auto', choices=PRECISION_CHOICES,
                            help='network precision (auto: the fastest this machine runs '
                            'natively among those verified for accuracy)')
        parser.add_argument('--ensemble', nargs='+', default=[], metavar='CHECKPOINT',
                            help="more checkpoints whose maps are averaged with --model's "
                            '(one network pass each per frame)')
        parser.add_argument('--mirror', action='store_true',
                            help='also run the network on the left-right mirrored input and '
                            'average the maps (twice the network time)')
        parser.add_argument('--calibration', default=None,
                            help='folder of depth frames that calibrate int8 quantisation '
                            '(default: the bundled demo frames)')
    parser.add_argument('--crop-size', type=int, default=400,
                        help='square crop side in source pixels (0 = largest) of --scale-mode '
                        'pixels, and of metric mode when the model records no scale')
    parser.add_argument('--scale-mode', choices=SCALE_MODES, default='metric',
                        help='metric: the crop follows the focal length and the scene depth so '
                        'objects reach the network at its trained scale; pixels: --crop-size')
    parser.add_argument('--scene-depth', choices=tuple(SCENE_DEPTH_STATISTICS),
                        default='median', help='scene depth of metric mode: a statistic of the '
                        'valid depth in the crop')
    parser.add_argument('--no-jaw-check', action='store_true',
                        help='keep grasps whose open jaws would land on the object or a '
                        'neighbour (the check needs --intrinsics)')
    parser.add_argument('--finger-width', type=float, default=0.01,
                        help='jaw thickness along the closing direction, m')
    parser.add_argument('--jaw-depth', type=float, default=0.02,
                        help='jaw size across the closing direction, m')
    parser.add_argument('--jaw-clearance', type=float, default=0.01,
                        help='how far below the grasped surface the scene under a jaw must be, m')
    parser.add_argument('--jaw-margin', type=float, default=0.0,
                        help='extra opening on each side for the check, m')
    parser.add_argument('--q-threshold', type=float, default=0.2)
    parser.add_argument('--max-grasps', type=int, default=5)
    parser.add_argument('--width-given-quality', action='store_true',
                        help='read the width map as width / Q (the node parameter '
                        'width_given_quality; default: the raw width map)')


def cmd_detect(args):
    from .core.color import read_color_image
    from .core.depth import read_depth_image
    from .visualize import detection_to_json, save_detection_figure

    detector = _detector(args)
    depth_m = read_depth_image(args.image, args.depth_scale)
    color = read_color_image(args.color) if args.color else None
    intrinsics = parse_intrinsics(args.intrinsics, depth_m.shape[1], depth_m.shape[0])
    detection = detector.detect(depth_m, intrinsics)
    out = args.output or os.path.splitext(os.path.basename(args.image))[0] + '_grasps'
    save_detection_figure(out + '.png', depth_m, detection, color,
                          title=os.path.basename(args.image))
    with open(out + '.json', 'w') as stream:
        json.dump(detection_to_json(detection), stream, indent=2)
    for i, g in enumerate(detection.grasps_3d):
        print(f'grasp {i}: q={g.quality:.2f} u={g.u:.0f} v={g.v:.0f} '
              f'angle={g.angle * 57.2958:.0f} deg width={100 * g.width_m:.1f} cm '
              f'xyz=({g.position_m[0]:.3f}, {g.position_m[1]:.3f}, {g.position_m[2]:.3f}) m')
    if not detection.grasps_2d:
        print('no grasp above the quality threshold')
    print(f'wrote {out}.png and {out}.json')
    return 0


def _train_config(args):
    from .training.dataset import AugmentConfig
    from .training.train import TrainConfig

    if args.no_augment and (args.flip or args.composite > 0):
        raise ValueError('--flip and --composite are augmentations: drop --no-augment')
    augment = None if args.no_augment else AugmentConfig(
        flip=args.flip, composite=args.composite, composite_max_objects=args.composite_objects)
    camera = parse_intrinsics(args.intrinsics)
    return TrainConfig(dataset=args.dataset, output_dir=args.output, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       split_seed=args.split_seed,
                       device=args.device, precision=args.precision, workers=args.workers,
                       threads=args.threads, init=args.init, synthetic=args.synthetic,
                       synthetic_seed=args.synthetic_seed, ema=args.ema,
                       head_min_scale=args.head_min_scale,
                       calibrate_width=not args.no_width_calibration,
                       folds=args.folds, fold=args.fold, split=args.split,
                       object_map=args.object_map, augment=augment,
                       lr_schedule=args.lr_schedule, batch_renorm=args.batch_renorm,
                       depth_scale=args.depth_scale, validate_every=args.validate_every,
                       intrinsics=(camera.fx, camera.fy, camera.cx, camera.cy))


def cmd_train(args):
    from .training import distributed
    from .training.train import cross_validate, train

    config = _train_config(args)
    try:
        if args.cross_validate:
            cross_validate(config, resume=args.resume, progress=progress_bar())
        else:
            summary = train(config, resume=args.resume, progress=progress_bar())
            if distributed.Processes.from_environment().main:
                print(json.dumps(summary, indent=2))
    finally:
        distributed.finish()
    return 0


def _fold_samples(args, held_out=True):
    """The dataset's samples, or with ``--folds`` one part of fold ``--fold`` split as `train`
    splits it: its held-out images, or (``held_out=False``) its training images.

    :returns: ``(samples, skipped)``.
    """
    from .training.dataset import find_samples
    from .training.train import split_samples, TrainConfig

    samples, skipped = find_samples(args.dataset, args.object_map, args.depth_scale)
    if args.folds:
        if args.folds < 2 or not 0 <= args.fold < args.folds:
            raise SystemExit(f'--folds must be at least 2 and --fold in 0..--folds - 1, got '
                             f'--folds {args.folds} --fold {args.fold}')
        samples = [s for s in samples if s.load().grasps]
        train, test = split_samples(samples, TrainConfig(
            dataset=args.dataset, output_dir='', folds=args.folds, fold=args.fold,
            split=args.split, seed=args.seed))
        samples = test if held_out else train
        print(f'fold {args.fold} of {args.folds} ({args.split}-wise, seed {args.seed}), '
              f"{'held-out' if held_out else 'training'} images: {len(samples)}")
    return samples, skipped


def _add_fold_args(parser, what):
    parser.add_argument('--folds', type=int, default=0,
                        help=f'use only the {what} images of --fold of this many folds, split as '
                        '`train --folds` splits them (same --split, --seed, --object-map)')
    parser.add_argument('--fold', type=int, default=0)
    parser.add_argument('--split', choices=('image', 'object'), default='image')
    parser.add_argument('--seed', type=int, default=0,
                        help="the split's seed: train's --split-seed, or its --seed without "
                        'one')
    parser.add_argument('--object-map', help='file of "image object" lines for object-wise '
                        'splits')


def cmd_calibrate(args):
    from .core.model import rewrite_checkpoint, update_model_card
    from .training.evaluate import fit_width_scale, WIDTH_FIT_MAX_IMAGES

    if not args.output and not args.card:
        raise SystemExit('say where the calibration goes: --output NEW.pt or --card')
    samples, _ = _fold_samples(args, held_out=False)
    samples = [s for s in samples if s.load().grasps]
    if not samples:
        raise SystemExit(f'no labelled images in {args.dataset}')
    detector = _detector(args)
    best, scores = fit_width_scale(detector, samples, progress=progress_bar(),
                                   intrinsics=parse_intrinsics(args.intrinsics))
    print('width_scale  mean top-1 over J 0.25-0.40')
    for scale, score in scores.items():
        print(f'  {scale:4.2f}       {100 * score:6.2f} %{"  <- best" if scale == best else ""}')
    used = min(len(samples), WIDTH_FIT_MAX_IMAGES)
    source = (f'fitted by grasp-fcn calibrate on {used} images of {args.dataset}'
              + (f' (training images of fold {args.fold} of {args.folds}, {args.split}-wise)'
                 if args.folds else '')
              + f': mean top-1 {100 * scores[best]:.2f} % against {100 * scores.get(1.0, 0):.2f}'
              ' % uncalibrated')
    if args.output:
        rewrite_checkpoint(args.model, args.output, {'width_scale': best},
                           {'width_scale_source': source})
        print(f'wrote {args.output} (width_scale {best:g})')
    if args.card:
        card = update_model_card(args.model, {'width_scale': best, 'width_scale_source': source})
        print(f'wrote {card} (width_scale {best:g}; read for a checkpoint without one)')
    return 0


def cmd_eval(args):
    from dataclasses import replace

    from .training.evaluate import evaluate

    samples, skipped = _fold_samples(args)
    if args.limit:
        samples = samples[:args.limit]
    intrinsics = parse_intrinsics(args.intrinsics)
    if args.runtimes:
        return _compare_runtimes(args, samples, intrinsics)
    detector = _detector(args)
    if args.zoom:
        return _scale_study(args, detector, samples, intrinsics)
    result = evaluate(detector, samples, progress=progress_bar(), intrinsics=intrinsics)
    print(f'model: {args.model}')
    if detector.config.jaws.enabled:
        config = replace(detector.config, jaws=replace(detector.config.jaws, enabled=False))
        unchecked = evaluate(type(detector)(detector.backend, config), samples,
                             progress=progress_bar(), intrinsics=intrinsics)
        print('without the jaw clearance check (--no-jaw-check):')
        print(unchecked.table())
        print("\nwith the jaw clearance check (the node's default):")
    print(result.table())
    if skipped:
        print(f'({skipped} samples skipped: missing files)')
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(result.to_json(), stream, indent=2)
        print(f'wrote {args.json}')
    if args.figures:
        from .visualize import save_evaluation_figures
        written = save_evaluation_figures(args.figures, samples, result)
        print(f'wrote {written} figures to {args.figures}')
    return 0


def _compare_runtimes(args, samples, intrinsics):
    from .core.detector import GraspDetector
    from .training.evaluate import compare_runtimes, InputNoise, runtime_table

    detectors = {}
    for item in args.runtimes.split(','):
        backend, _, precision = item.strip().partition(':')
        backend = _backend(args, backend, precision or 'fp32')
        detectors[f'{backend.name} {backend.precision}'] = GraspDetector(
            backend, detector_config(args))
    if args.noise_floor_mm > 0:
        reference = next(iter(detectors))
        detectors[f'{reference} + {args.noise_floor_mm:g} mm noise'] = GraspDetector(
            InputNoise(detectors[reference].backend, args.noise_floor_mm / 1000.0),
            detector_config(args))
    samples = [s for s in samples if s.load().grasps]
    rows = compare_runtimes(detectors, samples, progress_bar(), intrinsics)
    print(f'model: {args.model}; {len(samples)} images; |dQ|: raw quality output against '
          f'{next(iter(detectors))} on the same network input')
    print(runtime_table(rows))
    if args.json:
        report = [{'runtime': r['name'], **r['result'].to_json(),
                   **{k: r[k] for k in ('q_mean_abs', 'q_p99_abs', 'q_max_abs', 'top1_same',
                                        'lost', 'gained', 'reference_margin', 'changes')}}
                  for r in rows]
        with open(args.json, 'w') as stream:
            json.dump(report, stream, indent=2)
        print(f'wrote {args.json}')
    return 0


def _scale_study(args, detector, samples, intrinsics):
    from .training.evaluate import scale_study, scale_table

    if detector.metres_per_pixel <= 0:
        raise ValueError(f'{args.model} records no training scale; metric mode needs one '
                         '(train it again with this version)')
    zooms = [float(v) for v in args.zoom.split(',')]
    rows = scale_study(detector, [s for s in samples if s.load().grasps], intrinsics, zooms)
    print(f'model: {args.model} ({1e3 * detector.metres_per_pixel:.3f} mm per network pixel)')
    print(scale_table(rows))
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(rows, stream, indent=2, default=str)
        print(f'wrote {args.json}')
    if args.plot:
        from .visualize import save_scale_plot
        save_scale_plot(args.plot, rows)
        print(f'wrote {args.plot}')
    return 0


def cmd_bench(args):
    from .bench import run_bench
    return run_bench(args)


def cmd_export(args):
    from .core.export import export_model
    calibration = None
    if args.precision == 'int8':
        calibration = args.calibration or default_calibration_dir()
    path = export_model(args.model, args.format, args.output, args.precision, calibration,
                        args.depth_scale)
    print(f'wrote {path}')
    return 0


def _object_range(text):
    """``N`` or ``LOW-HIGH`` objects per scene as a (low, high) pair."""
    try:
        parts = [int(v) for v in text.split('-')]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LOW-HIGH, got '{text}'") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"expected N or LOW-HIGH with 1 <= LOW <= HIGH, "
                                         f"got '{text}'")
    return tuple(parts)


def cmd_synth(args):
    import time

    from .synthetic import SceneConfig, SensorModel, write_dataset

    sensor = SensorModel(enabled=not args.perfect_depth,
                         fill_probability=args.fill_probability)
    config = SceneConfig(camera=args.camera, view=args.view, objects=args.objects,
                         sensor=sensor)
    start = time.perf_counter()
    rectangles = write_dataset(args.output, args.count, args.seed, config, start=args.start,
                               jobs=args.jobs, progress=progress_bar())
    seconds = time.perf_counter() - start
    print(f'wrote {args.count} scenes ({rectangles} grasp rectangles) to {args.output} in '
          f'{seconds:.1f} s ({args.count / max(seconds, 1e-9):.2f} scenes/s with '
          f'{args.jobs} job(s))')
    if args.camera != 'kinect':
        print('the scenes hold more than one camera model: each pcdNNNNscene.json gives its '
              "intrinsics (train and eval assume --intrinsics' one)")
    return 0


def _at_least_one(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value


def _fraction(text, what, one_allowed):
    """A float in [0, 1] (or [0, 1) without ``one_allowed``) for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not (0.0 <= value <= 1.0 and (one_allowed or value < 1.0)):
        interval = '[0, 1]' if one_allowed else '[0, 1)'
        raise argparse.ArgumentTypeError(f"expected {what} in {interval}, got '{text}'")
    return value


def _noise_mm(text):
    """A depth noise in millimetres, in [0, 10], for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not 0.0 <= value <= 10.0:
        raise argparse.ArgumentTypeError(f"expected a noise in [0, 10] mm, got '{text}'")
    return value


def _decay(text):
    return _fraction(text, 'a decay', one_allowed=False)


def _head_scale(text):
    return _fraction(text, 'a BatchNorm scale', one_allowed=True)


def _probability(text):
    return _fraction(text, 'a probability', one_allowed=True)


def _add_intrinsics(parser):
    parser.add_argument('--intrinsics', default=','.join(
        f'{v:g}' for v in (CORNELL_INTRINSICS.fx, CORNELL_INTRINSICS.fy, CORNELL_INTRINSICS.cx,
                           CORNELL_INTRINSICS.cy)),
        help="fx,fy,cx,cy of the depth images in pixels (default: the Cornell frames' Kinect "
        'approximation)')


def parse_intrinsics(text, width=0, height=0):
    """``fx,fy,cx,cy`` (pixels) as a :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`."""
    from .core.geometry import CameraIntrinsics

    try:
        fx, fy, cx, cy = (float(v) for v in text.split(','))
    except ValueError:
        raise ValueError(f"--intrinsics must be 'fx,fy,cx,cy' in pixels, got '{text}'") from None
    return CameraIntrinsics(fx, fy, cx, cy, int(width), int(height))


def _add_depth_scale(parser):
    parser.add_argument('--depth-scale', type=float, default=0.001,
                        help='metres per unit of 16-bit depth files (default 0.001: '
                        'millimetres); float TIFF / .npy files hold metres')


def build_parser():
    parser = argparse.ArgumentParser(prog='grasp-fcn', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('detect', help='detect grasps in one depth image (16-bit PNG/TIFF in '
                       'units of --depth-scale, float TIFF in metres, or .npy)')
    p.add_argument('image')
    _add_depth_scale(p)
    p.add_argument('--color', help='colour image to draw the grasps on')
    _add_intrinsics(p)
    p.add_argument('--output', help='output path without extension')
    _add_model_args(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser('train', help='train on a Cornell-layout dataset (several processes '
                       'with torchrun --nproc-per-node N -m grasp_fcn_ros.cli train ...)')
    p.add_argument('--dataset', required=True)
    p.add_argument('--output', required=True, help='run folder (checkpoints, log.csv)')
    p.add_argument('--epochs', type=int, default=100)
    p.add_argument('--batch-size', type=int, default=8,
                   help='images per optimiser step, all processes together (under torchrun '
                   'each takes its share; it must divide)')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate (peak)')
    p.add_argument('--lr-schedule', choices=('cosine', 'constant'), default='cosine',
                   help='cosine: from --lr down to 0 over the run')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--split-seed', type=int, default=None,
                   help='seed of the --folds split (default: --seed); another --seed with the '
                   'same --split-seed trains another model of the same folds')
    p.add_argument('--no-width-calibration', action='store_true',
                   help='do not fit the width calibration (width_scale) on the training images '
                   'after the last epoch')
    p.add_argument('--ema', type=_decay, default=0.0, metavar='DECAY',
                   help='keep an exponential moving average of the weights (decay per '
                   "optimiser step, e.g. 0.98) and make it the run's model: validated, and "
                   'written to best.pt and last.pt (default 0: off)')
    p.add_argument('--head-min-scale', type=_head_scale, default=HEAD_BN_MIN_SCALE,
                   metavar='SCALE',
                   help="keep each output head's BatchNorm scale at least this large in "
                   'magnitude, from --init on and after every step, so that no head dies '
                   '(outputs a constant); 0 = off (default %(default)s)')
    p.add_argument('--device', default='auto')
    p.add_argument('--precision', choices=PRECISIONS, default='auto',
                   help='autocast of the training forward: auto takes bf16 where the CPU '
                   '(AMX-BF16 or AVX512-BF16) or the GPU computes it natively, fp16 on older '
                   'GPUs, else fp32; bf16 where it is not native falls back to fp32; fp16 '
                   'needs CUDA. Loss, weights and checkpoints stay fp32')
    p.add_argument('--workers', type=int, default=-1,
                   help='data loader workers per process (default: none on a CPU with fewer '
                   'than 8 cores per process, 2 above; up to 8 with CUDA; 0 = in process)')
    p.add_argument('--threads', type=int, default=0,
                   help="CPU threads per process (default: torch's, or under torchrun the "
                   "machine's cores shared among its processes)")
    p.add_argument('--init', help="start from this checkpoint's weights and architecture "
                   '(new optimiser and schedule)')
    p.add_argument('--synthetic', type=int, default=0,
                   help='mix this many synthetic scenes (Cornell-like camera and table, rendered '
                   'on the fly by the data workers) into every epoch')
    p.add_argument('--synthetic-seed', type=int, default=1,
                   help='seed of the --synthetic scenes')
    p.add_argument('--folds', type=int, default=0, help='k of k-fold splits (0 = train on all)')
    p.add_argument('--fold', type=int, default=0, help='held-out fold of a single run')
    p.add_argument('--split', choices=('image', 'object'), default='image')
    p.add_argument('--object-map', help='file of "image object" lines for object-wise splits')
    p.add_argument('--cross-validate', action='store_true', help='train and score every fold')
    p.add_argument('--validate-every', type=_at_least_one, default=1, metavar='N',
                   help='recalibrate BatchNorm and validate every N epochs and after the last '
                   '(the weights do not depend on it)')
    p.add_argument('--no-augment', action='store_true')
    p.add_argument('--flip', action='store_true',
                   help='mirror half of the training examples left-right (never up-down: the '
                   'camera sees the table obliquely)')
    p.add_argument('--composite', type=_probability, default=0.0, metavar='P',
                   help='paste, into this share of the training examples, objects cut out of '
                   'other training images (of the fold), turned and moved onto free table '
                   'with their rectangles (default 0: none)')
    p.add_argument('--composite-objects', type=_at_least_one, default=2, metavar='N',
                   help='a composited example gets 1 to N pasted objects')
    p.add_argument('--batch-renorm', action='store_true',
                   help='train BatchNorm layers with Batch Renormalization (default: plain '
                   'BatchNorm, running statistics recalibrated on training images)')
    p.add_argument('--resume', action='store_true', help='continue from <output>/last.pt')
    _add_depth_scale(p)
    _add_intrinsics(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser('eval', help='rectangle-metric accuracy on a Cornell-layout dataset')
    p.add_argument('--dataset', required=True)
    p.add_argument('--json', help='write the results as JSON')
    p.add_argument('--figures', help='folder for PNGs of right and wrong predictions')
    p.add_argument('--limit', type=int, default=0, help='first N images only')
    _add_fold_args(p, 'held-out')
    p.add_argument('--zoom', help='comma list of zoom factors: score the images as a camera '
                   'with that many times the focal length sees them (objects larger, as from '
                   'nearer), with the metric and the fixed pixel crop, and print the table')
    p.add_argument('--plot', help='with --zoom: write accuracy against distance as a PNG')
    p.add_argument('--runtimes', help='comma list of backend:precision (e.g. torch:fp32,'
                   'openvino:bf16,openvino:int8): score each, the first as the reference, and '
                   'print accuracy and quality-map differences side by side')
    p.add_argument('--noise-floor', dest='noise_floor_mm', type=_noise_mm, default=0.0,
                   metavar='MM', help='with --runtimes: also score the reference fed depth '
                   'with this much Gaussian noise (mm, e.g. 0.1); the verdicts that change '
                   "under it are the metric's knife edges, not a runtime's (0 = off)")
    _add_depth_scale(p)
    _add_intrinsics(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser('calibrate', help="fit a model's width calibration (width_scale) on "
                       'its training images')
    p.add_argument('--dataset', required=True, help='labelled images the model was trained on')
    p.add_argument('--output', help='write the model with its calibration to this checkpoint')
    p.add_argument('--card', action='store_true',
                   help='write the calibration into the model card beside --model instead '
                   '(read for a checkpoint that records none)')
    _add_fold_args(p, 'training')
    _add_depth_scale(p)
    _add_intrinsics(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser('bench', help='per-stage latency of the detection pipeline')
    p.add_argument('--dataset', default=None, help='depth frames (default: bundled demo frames)')
    p.add_argument('--frames', type=int, default=50)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--backends', default='all', help='comma list, or all')
    p.add_argument('--json', help='write the results as JSON')
    p.add_argument('--holes', choices=('edges', 'none'), default='edges',
                   help='invalidate depth edges as a depth camera does (edges), so that '
                   'inpainting is timed, or use the frames as they are (none)')
    p.add_argument('--threads', type=int, default=0,
                   help="CPU threads per backend (0 = all cores); with --ros the node's "
                   'inference_threads')
    p.add_argument('--mirror', action='store_true',
                   help="run each network on the frame and its mirror image (the node's "
                   'test_time_mirror), in-process mode')
    p.add_argument('--ros', action='store_true', help='measure the running node over ROS 2')
    p.add_argument('--rate', type=float, default=5.0, help='publish rate for --ros, Hz')
    p.add_argument('--transport', choices=('shm', 'default'), default='shm',
                   help='--ros: Fast DDS over large shared-memory segments only (shm), or '
                   "the RMW's default transport")
    _add_depth_scale(p)
    _add_model_args(p, backend=False)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser('synth', help='render synthetic tabletop depth scenes with grasp labels '
                       "from their geometry, in Cornell's layout")
    p.add_argument('--output', required=True, help='folder to write pcdNNNN* files into')
    p.add_argument('--count', type=int, required=True, help='number of scenes')
    p.add_argument('--seed', type=int, default=0, help='scene i of a seed is always the same')
    p.add_argument('--start', type=int, default=0, help='index of the first scene')
    p.add_argument('--objects', type=_object_range, default=(1, 6),
                   help='objects per scene: N or LOW-HIGH (default 1-6)')
    p.add_argument('--camera', choices=('kinect', 'realsense', 'mixed'), default='kinect',
                   help="kinect: 640x480, fx 570-600 px (Cornell's); realsense: 640x480 or "
                   '1280x720, fx 600-940 px')
    p.add_argument('--view', choices=('table', 'bin', 'mixed'), default='table',
                   help="table: oblique, 35-60 deg at 0.8-1.5 m (Cornell's); bin: near "
                   'top-down, 0-20 deg at 0.3-0.7 m')
    p.add_argument('--fill-probability', type=float, default=0.5,
                   help="share of frames whose holes are inpainted as Cornell's files are; "
                   'the others keep them as NaN, as a raw camera frame has them')
    p.add_argument('--perfect-depth', action='store_true',
                   help='no sensor model: the rendered depth as it is')
    p.add_argument('--jobs', type=int, default=1, help='worker processes')
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser('export', help='export the network for a faster runtime')
    p.add_argument('--format', choices=('onnx', 'openvino', 'checkpoint'), default='onnx',
                   help='checkpoint: our own format without the optimiser state, to ship')
    p.add_argument('--precision', choices=('fp32', 'fp16', 'int8'), default='fp32',
                   help='openvino: fp16 weights, or int8 quantised with NNCF; checkpoint: fp16 '
                   'weights (half the file)')
    p.add_argument('--calibration', default=None,
                   help='int8: folder of depth frames (default: the bundled demo frames)')
    p.add_argument('--depth-scale', type=float, default=0.001,
                   help='metres per unit of integer calibration depth files')
    p.add_argument('--output', help='output file (default: beside the model)')
    p.add_argument('--model', default=default_model_path())
    p.set_defaults(func=cmd_export)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f'grasp-fcn {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
