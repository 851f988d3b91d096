"""The grasp detector: preprocessing, network, post-processing and projection composed.

:func:`~.preprocess.prepare_input` is re-exported here: it is the detector's first stage.
"""

from dataclasses import dataclass, field, replace
import time

import numpy as np

from .depth import DepthError
from .geometry import CropTransform
from .jaws import fit_support_plane, JawConfig, jaws_clear
from .postprocess import detect_grasps, maps_from_output, PostprocessConfig
from .preprocess import DEFAULT_MAX_DEPTH_M, DEFAULT_MIN_DEPTH_M, prepare_input
from .projection import project_grasp
from .scale import metric_crop, SCALE_MODES

#: With the jaw clearance check, peaks considered per grasp asked for (``max_grasps``).
JAW_CANDIDATES_PER_GRASP = 4


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the detector (the node's parameters map onto these one to one).

    :param crop_size_px: side of the square window cut from the source image, source pixels
        (0 = the largest centred square); resized to the network's input size. Used in
        ``pixels`` scale mode, and in ``metric`` mode when the model or the frame cannot give a
        scale.
    :param crop_offset_x_px: shift of the window centre to the right, source pixels.
    :param crop_offset_y_px: shift of the window centre downwards, source pixels.
    :param min_depth_m: nearest valid depth, metres.
    :param max_depth_m: farthest valid depth, metres.
    :param depth_radius_px: half side of the window for the grasp centre's depth, pixels.
    :param postprocess: peak extraction settings.
    :param jaws: the jaw clearance check (:mod:`~grasp_fcn_ros.core.jaws`); it needs
        intrinsics, without them it is skipped.
    :param scale_mode: ``metric``: the crop side follows the focal length and the scene depth
        so that objects reach the network at the scale of its training data (see
        :mod:`~grasp_fcn_ros.core.scale`; needs intrinsics and a model that records its
        scale); ``pixels``: ``crop_size_px``.
    :param scene_depth_statistic: the scene depth of metric mode, ``median`` or
        ``lower_quartile`` of the valid depth in the window.
    """

    crop_size_px: int = 400
    crop_offset_x_px: int = 0
    crop_offset_y_px: int = 0
    min_depth_m: float = DEFAULT_MIN_DEPTH_M
    max_depth_m: float = DEFAULT_MAX_DEPTH_M
    depth_radius_px: int = 2
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    jaws: JawConfig = field(default_factory=JawConfig)
    scale_mode: str = 'metric'
    scene_depth_statistic: str = 'median'

    def __post_init__(self):
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {', '.join(SCALE_MODES)}, got "
                             f"'{self.scale_mode}'")


@dataclass
class Detection:
    """Result of one frame.

    :param grasps_2d: grasps in source pixels, best first.
    :param grasps_3d: the grasps that have a valid depth, as poses (empty without intrinsics).
    :param maps: :class:`~grasp_fcn_ros.core.postprocess.GraspMaps` at network resolution.
    :param transform: the :class:`~grasp_fcn_ros.core.geometry.CropTransform` used.
    :param network_input: the normalised network input (S, S).
    :param timings_ms: stage name -> milliseconds.
    :param rejected: candidates (source pixels, best first) the jaw clearance check dropped.
    :param scale_mode: the scale mode this frame used (``metric`` or ``pixels``).
    :param wanted_crop_px: in metric mode, the crop side the scale asked for; it differs from
        ``transform.size`` when that did not fit the image and was clamped.
    """

    grasps_2d: list
    grasps_3d: list
    maps: object
    transform: CropTransform
    network_input: np.ndarray
    timings_ms: dict
    scale_mode: str = 'pixels'
    wanted_crop_px: int = None
    rejected: list = field(default_factory=list)

    @property
    def crop_clamped(self):
        """True when metric mode wanted a crop the image could not hold."""
        return self.wanted_crop_px is not None and self.wanted_crop_px != self.transform.size


class GraspDetector:
    """Detects grasps in depth images: numpy in, numpy out.

    :param backend: an inference backend (see :mod:`grasp_fcn_ros.core.backends`).
    :param config: a :class:`DetectorConfig`.
    """

    STAGES = ('preprocess', 'inference', 'postprocess', 'projection')

    def __init__(self, backend, config=None):
        self.backend = backend
        self.config = config or DetectorConfig()

    @property
    def input_size(self):
        return self.backend.config.input_size

    def with_config(self, **changes):
        """Replace detector settings (postprocess settings go in ``postprocess=``)."""
        self.config = replace(self.config, **changes)
        return self

    def transform_for(self, width, height):
        """The crop transform for a source image size (raises GeometryError if it cannot)."""
        c = self.config
        return CropTransform.centred(width, height, c.crop_size_px, self.input_size,
                                     c.crop_offset_x_px, c.crop_offset_y_px)

    @property
    def metres_per_pixel(self):
        """The model's trained scale, metres per network pixel (0 when unknown)."""
        return float(getattr(self.backend.config, 'metres_per_pixel', 0.0) or 0.0)

    def crop_for(self, depth_m, intrinsics=None):
        """The crop of a frame: ``(transform, scale_mode, wanted_side_px)``.

        Metric mode needs intrinsics and a model that records its scale; otherwise, and when
        the frame has no valid depth to measure, the ``pixels`` crop is used.
        """
        c = self.config
        height, width = depth_m.shape
        if c.scale_mode == 'metric' and intrinsics is not None and self.metres_per_pixel > 0:
            transform, wanted = metric_crop(
                depth_m, intrinsics, self.metres_per_pixel, self.input_size,
                c.scene_depth_statistic, c.min_depth_m, c.max_depth_m, c.crop_offset_x_px,
                c.crop_offset_y_px)
            return transform, 'metric', wanted
        return self.transform_for(width, height), 'pixels', None

    def detect(self, depth_m, intrinsics=None):
        """Detect grasps in one depth image.

        :param depth_m: float depth image (H, W) in metres; 0 or NaN where invalid.
        :param intrinsics: :class:`~grasp_fcn_ros.core.geometry.CameraIntrinsics`; without it
            only 2-D grasps are returned.
        :returns: a :class:`Detection`.
        :raises DepthError: when the image holds no usable depth.
        :raises GeometryError: when the crop does not fit or the intrinsics do not match.
        """
        depth_m = np.asarray(depth_m)
        if depth_m.ndim != 2:
            raise DepthError(f'depth must be a 2-D array, got shape {depth_m.shape}')
        c = self.config
        timings = {}
        t0 = time.perf_counter()
        height, width = depth_m.shape
        if intrinsics is not None:
            intrinsics.validate(width, height)
        transform, scale_mode, wanted = self.crop_for(depth_m, intrinsics)
        net_input = prepare_input(depth_m, transform, c.min_depth_m, c.max_depth_m)
        t1 = time.perf_counter()
        output = self.backend.predict(net_input[None, None])[0]
        t2 = time.perf_counter()
        maps = maps_from_output(output, self.backend.config.width_px_per_unit, c.postprocess)
        check_jaws = intrinsics is not None and c.jaws.enabled
        post = c.postprocess
        if check_jaws:  # candidates beyond max_grasps replace the ones the check drops
            post = replace(post, max_grasps=post.max_grasps * JAW_CANDIDATES_PER_GRASP)
        candidates = detect_grasps(maps, post, transform)
        t3 = time.perf_counter()
        # the support plane only matters to a candidate that gets a pose: a frame without
        # candidates (most frames above a threshold on an empty table) skips the fit
        plane = (fit_support_plane(depth_m, intrinsics, c.min_depth_m, c.max_depth_m)
                 if check_jaws and candidates else None)
        grasps_2d, grasps_3d, rejected = [], [], []
        for grasp in candidates:
            if len(grasps_2d) >= c.postprocess.max_grasps:
                break
            pose = None
            if intrinsics is not None:
                pose = project_grasp(grasp, depth_m, intrinsics, c.depth_radius_px,
                                     c.min_depth_m, c.max_depth_m)
            if check_jaws and pose is not None and not jaws_clear(
                    pose, depth_m, intrinsics, c.jaws, c.min_depth_m, c.max_depth_m, plane)[0]:
                rejected.append(grasp)
                continue
            grasps_2d.append(grasp)
            if pose is not None:
                grasps_3d.append(pose)
        t4 = time.perf_counter()
        for name, start, end in zip(self.STAGES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
            timings[name] = (end - start) * 1e3
        return Detection(grasps_2d, grasps_3d, maps, transform, net_input, timings, scale_mode,
                         wanted, rejected)
