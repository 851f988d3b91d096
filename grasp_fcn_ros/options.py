"""Options shared by the offline tools: the detector settings of command-line arguments and the
progress bar. The CLI and the benchmark both use them; neither imports the other for them."""


def progress_bar():
    """The progress bar factory of long offline work (tqdm)."""
    from tqdm import tqdm
    return tqdm


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
