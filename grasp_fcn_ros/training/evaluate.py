"""Evaluation with the rectangle metric, through the detector the node runs."""

from dataclasses import dataclass, field, replace
import hashlib

import cv2
import numpy as np

from ..core.geometry import CameraIntrinsics
from ..core.grasp import best_match_iou, Grasp2D, grasp_matches

#: Jaccard thresholds of the paper's table.
JACCARD_THRESHOLDS = (0.25, 0.30, 0.35, 0.40)
#: Largest angle difference (modulo pi) between a correct grasp and its ground truth, radians.
MAX_ANGLE_RAD = float(np.deg2rad(30.0))
#: Top-N grasps reported.
TOP_N = 5


def _zoomed_size(width, height, zoom):
    """(width, height) in pixels of an image of ``width`` x ``height`` zoomed by ``zoom``."""
    return max(int(round(width * zoom)), 1), max(int(round(height * zoom)), 1)


def zoomed_sample(sample, zoom):
    """A loaded sample as a camera with ``zoom`` times the focal length would see it.

    The depth image is resampled (nearest neighbour: no depth is invented) and the rectangles
    scaled about pixel centres; objects appear ``zoom`` times larger, as from ``1 / zoom`` of
    the distance with the same camera.

    :returns: a new :class:`~grasp_fcn_ros.training.dataset.CornellSample`.
    """
    h, w = sample.depth_m.shape
    size = _zoomed_size(w, h, zoom)
    depth = cv2.resize(sample.depth_m, size, interpolation=cv2.INTER_NEAREST)
    scale = np.array(size, np.float64) / [w, h]
    grasps = [Grasp2D.from_polygon((g.polygon() + 0.5) * scale - 0.5, g.quality)
              for g in sample.grasps]
    return replace(sample, depth_m=depth, grasps=grasps)


def zoomed_intrinsics(intrinsics, zoom, width, height):
    """The pinhole model of :func:`zoomed_sample`'s image (``width`` x ``height`` the source
    size), pixels."""
    size = _zoomed_size(width, height, zoom)
    sx, sy = size[0] / width, size[1] / height
    return CameraIntrinsics(intrinsics.fx * sx, intrinsics.fy * sy,
                            (intrinsics.cx + 0.5) * sx - 0.5, (intrinsics.cy + 0.5) * sy - 0.5,
                            size[0], size[1])


@dataclass
class ImageResult:
    """Outcome for one image: the ranked predictions and which thresholds they pass.

    ``top1_iou`` is the top-1 grasp's :func:`~grasp_fcn_ros.core.grasp.best_match_iou` (0
    without a prediction): it passes the Jaccard thresholds below it.
    """

    name: str
    predictions: list
    correct_top1: dict = field(default_factory=dict)
    correct_rank: list = field(default_factory=list)
    top1_iou: float = 0.0
    crop_px: int = 0


@dataclass
class EvaluationResult:
    """Accuracy over a set of images (fractions in [0, 1])."""

    images: int
    accuracy: dict
    top_n: dict
    per_image: list

    def to_json(self):
        return {'images': self.images,
                'accuracy': {f'{j:.2f}': a for j, a in self.accuracy.items()},
                'top_n': {str(n): a for n, a in self.top_n.items()}}

    def table(self):
        """A plain-text table of the results."""
        lines = [f'images: {self.images}', '',
                 f'top-1 accuracy (angle < {np.degrees(MAX_ANGLE_RAD):.0f} deg, IoU > J)',
                 '  J     accuracy']
        lines += [f'  {j:.2f}  {100 * a:6.2f} %' for j, a in self.accuracy.items()]
        lines += ['', 'top-N accuracy (J = 0.25)', '  N     accuracy']
        lines += [f'  {n}     {100 * a:6.2f} %' for n, a in self.top_n.items()]
        return '\n'.join(lines)


def evaluation_detector(detector):
    """The detector with the post-processing used for evaluation.

    The threshold is dropped so every image yields its best grasps, and ``TOP_N`` grasps are
    extracted; everything else is the detector's own configuration.
    """
    post = replace(detector.config.postprocess, q_threshold=0.0,
                   max_grasps=max(TOP_N, detector.config.postprocess.max_grasps))
    clone = type(detector)(detector.backend, replace(detector.config, postprocess=post))
    return clone


def evaluate(detector, samples, progress=None, intrinsics=None):
    """Score a detector on loaded samples with the rectangle metric.

    :param detector: a :class:`~grasp_fcn_ros.core.detector.GraspDetector`.
    :param samples: :class:`~grasp_fcn_ros.training.dataset.CornellSample` list.
    :param progress: optional callable wrapping an iterable (e.g. ``tqdm``).
    :param intrinsics: the images' camera model, or a callable ``sample -> model``; with it
        the detector's metric scale mode applies (as in the node), without it the pixel crop.
    :returns: an :class:`EvaluationResult`.
    """
    detector = evaluation_detector(detector)
    iterable = progress(samples) if progress else samples
    per_image = []
    for sample in iterable:
        sample.load()
        camera = intrinsics(sample) if callable(intrinsics) else intrinsics
        detection = detector.detect(sample.depth_m, camera)
        preds = detection.grasps_2d
        result = ImageResult(sample.name, preds, crop_px=detection.transform.size)
        if preds:
            result.top1_iou = best_match_iou(preds[0], sample.grasps, MAX_ANGLE_RAD)
        for j in JACCARD_THRESHOLDS:
            result.correct_top1[j] = result.top1_iou > j
        result.correct_rank = [
            grasp_matches(p, sample.grasps, JACCARD_THRESHOLDS[0], MAX_ANGLE_RAD)
            for p in preds[:TOP_N]]
        per_image.append(result)
    n = len(per_image)
    accuracy = {j: float(np.mean([r.correct_top1[j] for r in per_image])) if n else 0.0
                for j in JACCARD_THRESHOLDS}
    top_n = {k: float(np.mean([any(r.correct_rank[:k]) for r in per_image])) if n else 0.0
             for k in range(1, TOP_N + 1)}
    return EvaluationResult(n, accuracy, top_n, per_image)


#: Width calibrations :func:`fit_width_scale` tries (``ModelConfig.width_scale``).
WIDTH_SCALES = tuple(round(0.5 + 0.05 * i, 2) for i in range(15))  # 0.5 ... 1.2
#: Most images :func:`fit_width_scale` reads: their maps are held in memory while the
#: candidates are scored (2.6 MB each at 400x400), and a few hundred images fit one factor well.
WIDTH_FIT_MAX_IMAGES = 200


def spread(samples, count):
    """Up to ``count`` samples evenly spread over the list, its first and last included, in
    order: the same subset every time (name-sorted samples are grouped by object, so a
    prefix would cover few objects)."""
    if count <= 0 or not samples:
        return []
    count = min(count, len(samples))
    return [samples[i] for i in np.linspace(0, len(samples) - 1, count).round().astype(int)]


class _OutputCache:
    """A backend that runs the network once per distinct input and presents a chosen width
    calibration: the network's maps do not depend on it, only their reading does."""

    def __init__(self, backend):
        self.backend = backend
        self.config = backend.config
        self._outputs = {}

    def with_width_scale(self, width_scale):
        self.config = replace(self.backend.config, width_scale=float(width_scale))
        return self

    def predict(self, batch):
        key = hashlib.sha1(np.ascontiguousarray(batch).tobytes()).hexdigest()
        if key not in self._outputs:
            self._outputs[key] = self.backend.predict(batch)
        return self._outputs[key]


def fit_width_scale(detector, samples, scales=WIDTH_SCALES, progress=None, intrinsics=None,
                    max_images=WIDTH_FIT_MAX_IMAGES):
    """The width calibration under which the detector's top-1 grasps score best on some images
    (the model's training images: never the images it is then scored on).

    A network trained to regress the opening can read it too wide or too narrow across the
    board (one fine-tuned from synthetic scenes read its top grasps' openings at a median 1.5
    times the nearest ground truth's, on held-out and training images alike); the calibration
    is the factor :class:`~grasp_fcn_ros.core.model.ModelConfig` ``width_scale`` that
    post-processing multiplies the width map by. Each candidate is scored by the top-1
    accuracy averaged over :data:`JACCARD_THRESHOLDS`; of equal scores, the one nearest 1.0
    wins. The network runs once per image. Of more than ``max_images`` images, that many
    spread over the list are read (:func:`spread`): a synthetic pre-training set of thousands
    would otherwise hold gigabytes of maps and score every candidate on each image.

    :param detector: a :class:`~grasp_fcn_ros.core.detector.GraspDetector`; its own
        ``width_scale`` is ignored (the fit is absolute).
    :param samples: loaded :class:`~grasp_fcn_ros.training.dataset.CornellSample` list.
    :param scales: candidate factors.
    :param progress: optional callable wrapping an iterable (e.g. ``tqdm``), over the scales.
    :param intrinsics: as for :func:`evaluate`.
    :param max_images: most images read.
    :returns: ``(best_scale, {scale: mean top-1 accuracy over the thresholds})``.
    :raises ValueError: without samples or scales.
    """
    if not samples or not len(scales):
        raise ValueError('fitting a width calibration needs images and candidate scales')
    samples = spread(samples, max(int(max_images), 1))
    cache = _OutputCache(detector.backend)
    scores = {}
    for scale in (progress(scales) if progress else scales):
        result = evaluate(type(detector)(cache.with_width_scale(scale), detector.config),
                          samples, intrinsics=intrinsics)
        scores[float(scale)] = float(np.mean(list(result.accuracy.values())))
    best = max(scores, key=lambda k: (round(scores[k], 9), -abs(k - 1.0)))
    return best, scores


def scale_study(detector, samples, intrinsics, zooms, progress=None):
    """Top-1 accuracy against apparent camera distance, metric crop against the fixed crop.

    Each image is seen through :func:`zoomed_sample` at each zoom (objects ``zoom`` times
    larger, as from ``1 / zoom`` of the distance) and scored with the detector in ``pixels``
    mode (``crop_size_px``, clamped to the image) and in ``metric`` mode.

    :param detector: a :class:`~grasp_fcn_ros.core.detector.GraspDetector` whose model records
        its scale.
    :param samples: loaded-or-not Cornell samples.
    :param intrinsics: the samples' camera model.
    :param zooms: iterable of zoom factors.
    :returns: list of dicts ``zoom``, ``distance_m`` (the images' median scene depth over the
        zoom), ``mode``, ``accuracy`` (Jaccard -> fraction) and ``crop_px`` (median side).
    """
    from ..core.detector import GraspDetector
    from ..core.geometry import CropTransform
    from ..core.scale import scene_depth

    samples = [s.load() for s in samples]
    config = detector.config
    depths = [scene_depth(s.depth_m, CropTransform.centred(
        s.depth_m.shape[1], s.depth_m.shape[0], 0, detector.input_size), 'median',
        config.min_depth_m, config.max_depth_m) for s in samples]
    base_m = float(np.median([z for z in depths if z is not None]))
    rows = []
    for zoom in zooms:
        zoomed = [zoomed_sample(s, zoom) for s in samples]
        cameras = {z.name: zoomed_intrinsics(intrinsics, zoom, *s.depth_m.shape[::-1])
                   for s, z in zip(samples, zoomed)}
        side = min(min(z.depth_m.shape) for z in zoomed)
        for mode in ('pixels', 'metric'):
            crop = min(config.crop_size_px or side, side)
            run = GraspDetector(detector.backend, replace(config, scale_mode=mode,
                                                          crop_size_px=crop))
            result = evaluate(run, zoomed, progress, intrinsics=lambda z: cameras[z.name])
            rows.append({'zoom': float(zoom), 'distance_m': base_m / zoom, 'mode': mode,
                         'accuracy': dict(result.accuracy),
                         'crop_px': float(np.median([r.crop_px for r in result.per_image]))})
    return rows


def scale_table(rows):
    """A plain-text table of :func:`scale_study` rows."""
    lines = ['zoom  distance  mode     crop (px)  top-1 @ J 0.25 / 0.30 / 0.35 / 0.40']
    for r in rows:
        accuracy = ' / '.join(f'{100 * a:5.1f}' for a in r['accuracy'].values())
        lines.append(f"{r['zoom']:4.2f}  {r['distance_m']:6.2f} m  {r['mode']:7s}  "
                     f"{r['crop_px']:7.0f}    {accuracy} %")
    return '\n'.join(lines)


class InputNoise:
    """A backend whose input depth gets Gaussian noise of ``sigma_m`` metres (seeded) before
    the network reads it: the noise floor of a runtime comparison.

    A grasp near a Jaccard threshold, or whose jaws land near the clearance, changes its
    verdict under any small change of the maps; run beside a reduced precision, fp32 fed a
    fraction of a millimetre of depth noise (a depth camera's is millimetres) shows which
    changed verdicts the metric's knife edges, not the precision, account for.
    """

    def __init__(self, backend, sigma_m, seed=0):
        self.backend = backend
        self.sigma_m = float(sigma_m)
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def predict(self, batch):
        batch = np.asarray(batch, dtype=np.float32)
        noise = self._rng.normal(0.0, self.sigma_m, batch.shape).astype(np.float32)
        return self.backend.predict(batch + noise)


#: Top-1 grasps of two runtimes are "the same" within these source pixels and degrees.
SAME_GRASP_PX = 2.0
SAME_GRASP_DEG = 5.0


def _same_grasp(a, b):
    if a is None or b is None:
        return a is None and b is None
    turn = abs((a.angle - b.angle + np.pi / 2) % np.pi - np.pi / 2)
    return (np.hypot(a.u - b.u, a.v - b.v) <= SAME_GRASP_PX
            and np.degrees(turn) <= SAME_GRASP_DEG)


def compare_runtimes(detectors, samples, progress=None, intrinsics=None):
    """Accuracy of the same network run by several runtimes (backend x precision), and how far
    their outputs are from the first one's (the reference).

    Each detector is scored as :func:`evaluate` scores it. On every image, each backend also
    runs on the reference's network input, so the map differences measure the runtime alone.

    :param detectors: ``{name: GraspDetector}``, the reference first.
    :param samples: Cornell samples.
    :returns: list of dicts per runtime: ``name``, ``result`` (:class:`EvaluationResult`),
        ``q_mean_abs`` / ``q_max_abs`` (raw quality output against the reference's),
        ``q_p99_abs``, ``top1_same`` (share of images whose top-1 grasp matches the
        reference's within :data:`SAME_GRASP_PX` and :data:`SAME_GRASP_DEG`), ``changes``
        (the verdicts, one image at one Jaccard threshold, that differ from the reference's:
        dicts of ``image``, ``jaccard``, ``reference_iou``, ``iou``), ``lost`` / ``gained``
        (how many of them the reference passes / fails) and ``reference_margin`` (the
        largest distance of the reference's IoU from the threshold over them: how borderline
        the changed verdicts were; 0 without any).
    """
    names = list(detectors)
    reference = evaluation_detector(detectors[names[0]])
    results = {name: evaluate(detector, samples, progress, intrinsics)
               for name, detector in detectors.items()}
    samples = [s.load() for s in samples]
    ref_top = {r.name: (r.predictions[0] if r.predictions else None)
               for r in results[names[0]].per_image}
    diffs, worst = {name: [] for name in names}, dict.fromkeys(names, 0.0)
    for sample in samples:
        camera = intrinsics(sample) if callable(intrinsics) else intrinsics
        net_input = reference.detect(sample.depth_m, camera).network_input[None, None]
        q_ref = np.clip(reference.backend.predict(net_input)[0, 0], 0.0, 1.0)
        for name in names[1:]:
            q = np.clip(detectors[name].backend.predict(net_input)[0, 0], 0.0, 1.0)
            delta = np.abs(q - q_ref)
            diffs[name].append(delta.ravel()[::7])  # a subsample keeps the percentile cheap
            worst[name] = max(worst[name], float(delta.max()))
    rows = []
    for name in names:
        sampled = np.concatenate(diffs[name]) if diffs[name] else np.zeros(1)
        same = [_same_grasp(ref_top[r.name], r.predictions[0] if r.predictions else None)
                for r in results[name].per_image]
        changes = _changed_verdicts(results[names[0]], results[name])
        rows.append({'name': name, 'result': results[name],
                     'q_mean_abs': float(sampled.mean()),
                     'q_p99_abs': float(np.percentile(sampled, 99)), 'q_max_abs': worst[name],
                     'top1_same': float(np.mean(same)) if same else 0.0,
                     'changes': changes,
                     'lost': sum(c['reference_iou'] > c['jaccard'] for c in changes),
                     'gained': sum(c['reference_iou'] <= c['jaccard'] for c in changes),
                     'reference_margin': max((abs(c['reference_iou'] - c['jaccard'])
                                              for c in changes), default=0.0)})
    return rows


def _changed_verdicts(reference, result):
    """The top-1 verdicts (image x Jaccard threshold) of ``result`` that differ from those of
    ``reference`` (two :class:`EvaluationResult` of the same images, in the same order)."""
    return [{'image': mine.name, 'jaccard': j, 'reference_iou': theirs.top1_iou,
             'iou': mine.top1_iou}
            for theirs, mine in zip(reference.per_image, result.per_image)
            for j in JACCARD_THRESHOLDS if mine.correct_top1[j] != theirs.correct_top1[j]]


def runtime_table(rows):
    """A plain-text table of :func:`compare_runtimes` rows."""
    width = max([22] + [len(r['name']) for r in rows])
    lines = [f"{'runtime':{width}s}  top-1 @ J 0.25 / 0.30 / 0.35 / 0.40   top-5   "
             '|dQ| mean    p99    max   same top-1   verdicts lost / gained (margin)']
    for r in rows:
        result = r['result']
        accuracy = ' / '.join(f'{100 * a:5.1f}' for a in result.accuracy.values())
        lines.append(f"{r['name']:{width}s}  {accuracy} %   {100 * result.top_n[TOP_N]:5.1f}   "
                     f"{r['q_mean_abs']:9.5f} {r['q_p99_abs']:6.4f} {r['q_max_abs']:6.3f}"
                     f"   {100 * r['top1_same']:5.1f} %   {r['lost']:3d} / {r['gained']:3d}"
                     f"   ({r['reference_margin']:.3f})")
    changed = [(r['name'], c) for r in rows for c in r['changes']]
    if changed:
        lines += ['', 'changed verdicts: runtime, image, Jaccard threshold, IoU of the '
                  "reference's top-1 -> this runtime's"]
        lines += [f"  {name:{width}s} {c['image']:12s} J {c['jaccard']:.2f}   "
                  f"{c['reference_iou']:.3f} -> {c['iou']:.3f}" for name, c in changed]
    return '\n'.join(lines)
