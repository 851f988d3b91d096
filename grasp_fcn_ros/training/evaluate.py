"""Evaluation with the rectangle metric, through the detector the node runs."""

from dataclasses import dataclass, field, replace

import numpy as np

from ..core.grasp import grasp_matches

#: Jaccard thresholds of the paper's table.
JACCARD_THRESHOLDS = (0.25, 0.30, 0.35, 0.40)
#: Largest angle difference (modulo pi) between a correct grasp and its ground truth, radians.
MAX_ANGLE_RAD = float(np.deg2rad(30.0))
#: Top-N grasps reported.
TOP_N = 5


@dataclass
class ImageResult:
    """Outcome for one image: the ranked predictions and which thresholds they pass."""

    name: str
    predictions: list
    correct_top1: dict = field(default_factory=dict)
    correct_rank: list = field(default_factory=list)


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


def evaluate(detector, samples, progress=None):
    """Score a detector on loaded samples with the rectangle metric.

    :param detector: a :class:`~grasp_fcn_ros.core.detector.GraspDetector`.
    :param samples: :class:`~grasp_fcn_ros.training.dataset.CornellSample` list.
    :param progress: optional callable wrapping an iterable (e.g. ``tqdm``).
    :returns: an :class:`EvaluationResult`.
    """
    detector = evaluation_detector(detector)
    iterable = progress(samples) if progress else samples
    per_image = []
    for sample in iterable:
        sample.load()
        detection = detector.detect(sample.depth_m)
        preds = detection.grasps_2d
        result = ImageResult(sample.name, preds)
        for j in JACCARD_THRESHOLDS:
            result.correct_top1[j] = bool(preds) and grasp_matches(preds[0], sample.grasps, j,
                                                                      MAX_ANGLE_RAD)
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
