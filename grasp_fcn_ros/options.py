"""Options shared by the offline tools: the detector settings of command-line arguments and the
progress bar. The CLI and the benchmark both use them; neither imports the other for them."""


import functools
import sys

#: Into a log file (stderr not a terminal) a progress bar writes at most one update this often,
#: seconds; on a terminal it redraws in place as often as tqdm likes.
LOG_INTERVAL_S = 30.0


def progress_bar(stream=None):
    """The progress bar factory of long offline work (tqdm), for ``stream`` (default stderr).

    On a terminal the bar redraws in place; written into a log (``grasp-fcn train ... > log
    2>&1``) it updates at most every :data:`LOG_INTERVAL_S` seconds, so that an hour's run
    leaves a few hundred updates in its log rather than one per batch.
    """
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, 'isatty', None)
    if isatty is not None and isatty():
        return functools.partial(tqdm, file=stream)
    return functools.partial(tqdm, file=stream, mininterval=LOG_INTERVAL_S)


def detector_config(args):
    """The core :class:`~grasp_fcn_ros.core.detector.DetectorConfig` of the detector options
    (``--crop-size``, ``--q-threshold``, ``--max-grasps``, ``--width-given-quality``,
    ``--scale-mode``, ``--scene-depth``
    and the jaw check's ``--no-jaw-check``, ``--finger-width``, ``--jaw-depth``,
    ``--jaw-clearance``, ``--jaw-margin``).
    """
    from .core.detector import DetectorConfig
    from .core.jaws import JawConfig
    from .core.postprocess import PostprocessConfig

    post = PostprocessConfig(q_threshold=args.q_threshold, max_grasps=args.max_grasps,
                             width_given_quality=getattr(args, 'width_given_quality', False))
    jaws = JawConfig(enabled=not getattr(args, 'no_jaw_check', False),
                     finger_width_m=getattr(args, 'finger_width', JawConfig.finger_width_m),
                     jaw_depth_m=getattr(args, 'jaw_depth', JawConfig.jaw_depth_m),
                     clearance_m=getattr(args, 'jaw_clearance', JawConfig.clearance_m),
                     margin_m=getattr(args, 'jaw_margin', JawConfig.margin_m))
    return DetectorConfig(crop_size_px=args.crop_size, postprocess=post, jaws=jaws,
                          scale_mode=getattr(args, 'scale_mode', 'metric'),
                          scene_depth_statistic=getattr(args, 'scene_depth', 'median'))
