"""Synthetic scenes with answers known in advance: depth images and frame transforms."""

import numpy as np

from grasp_fcn_ros.core.geometry import CORNELL_INTRINSICS
from grasp_fcn_ros.transforms import TransformError, TransformLookup

#: A Kinect-like camera at 640x480.
INTRINSICS = CORNELL_INTRINSICS


class FakeLookup(TransformLookup):
    """Transforms from a dict (target, source) -> (translation m, quaternion x y z w); every
    call is recorded in :attr:`calls`."""

    def __init__(self, transforms):
        self.transforms = transforms
        self.calls = []

    def lookup(self, target_frame, source_frame, stamp):
        self.calls.append((target_frame, source_frame, stamp))
        try:
            return self.transforms[(target_frame, source_frame)]
        except KeyError:
            raise TransformError(f'no transform {source_frame} -> {target_frame}') from None


def box_on_plane(width=640, height=480, plane_m=0.70, box_height_m=0.05,
                 box=(300, 220, 60, 40), dtype=np.float32):
    """A flat table at ``plane_m`` with a box ``(u0, v0, w, h)`` (pixels) raised above it.

    :returns: depth image in metres (float32) or in millimetres when ``dtype`` is uint16.
    """
    depth = np.full((height, width), plane_m, dtype=np.float64)
    u0, v0, w, h = box
    depth[v0:v0 + h, u0:u0 + w] = plane_m - box_height_m
    if np.dtype(dtype) == np.uint16:
        return np.round(depth * 1000).astype(np.uint16)
    return depth.astype(dtype)
