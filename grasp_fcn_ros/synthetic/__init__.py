"""Synthetic tabletop depth scenes with grasp labels from their geometry.

Pure numpy and OpenCV (no ROS, no torch). :func:`render_sample` renders the scene ``index`` of
a ``seed`` in memory, for training on the fly (:class:`SyntheticSamples` is a sequence of them
that a training loop can index like its list of Cornell samples); :func:`write_dataset` writes
scenes in Cornell's layout (``grasp-fcn synth``); :func:`sample_of_scene` renders and labels a
scene built from an explicit object list (:func:`make_scene`).
"""

from .generator import make_shape, OBJECT_KINDS, random_scene, SceneConfig
from .labels import GraspConfig, GraspLabel, TopDownGrid
from .samples import (
    render_sample,
    sample_of_scene,
    shade,
    SyntheticSample,
    SyntheticSamples,
    write_dataset,
)
from .scene import Camera, make_scene, PlacedObject, render, Room, Scene
from .sensor import SensorModel

__all__ = [
    'Camera', 'GraspConfig', 'GraspLabel', 'make_scene', 'make_shape', 'OBJECT_KINDS',
    'PlacedObject', 'random_scene', 'render', 'render_sample', 'Room', 'sample_of_scene',
    'Scene', 'SceneConfig', 'SensorModel', 'shade', 'SyntheticSample', 'SyntheticSamples',
    'TopDownGrid', 'write_dataset',
]
