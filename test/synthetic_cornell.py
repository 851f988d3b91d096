"""A tiny Cornell-layout dataset written by the tests: boxes on a table, grasps across them."""

import os

import cv2
import numpy as np

from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.training.dataset import format_rectangles

from scenes import box_on_plane


def box_grasps(box, angle_rad=0.0):
    """Two positive grasps across the box (opening along u, jaw about half the opening as in
    Cornell), as Grasp2D in source pixels."""
    u0, v0, w, h = box
    cu, cv = u0 + w / 2, v0 + h / 2
    return [Grasp2D(cu, cv, angle_rad, w + 20.0, jaw_px=(w + 20.0) / 2),
            Grasp2D(cu, cv + h / 4, angle_rad, w + 20.0, jaw_px=(w + 20.0) / 2 - 4)]


def write_dataset(root, count=4, seed=0, defects=True):
    """Write ``count`` samples ``pcd01NN`` under ``root/01``; returns ``{name: grasps}``.

    With ``defects``, the first sample's cpos file also holds a NaN rectangle and trailing
    spaces, and an extra depth image without a cpos file is written.
    """
    folder = os.path.join(root, '01')
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(count):
        name = f'pcd01{i:02d}'
        box = (int(rng.integers(240, 330)), int(rng.integers(170, 240)), 60, 40)
        depth = box_on_plane(box=box)
        cv2.imwrite(os.path.join(folder, name + 'd.tiff'), depth)
        color = np.dstack([(depth - 0.6) * 1000] * 3).clip(0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, name + 'r.png'), color)
        grasps = box_grasps(box)
        text = format_rectangles(g.polygon() for g in grasps)
        if defects and i == 0:
            text = text.replace('\n', ' \n') + 'NaN NaN\nNaN NaN\nNaN NaN\nNaN NaN\n'
        with open(os.path.join(folder, name + 'cpos.txt'), 'w') as stream:
            stream.write(text)
        with open(os.path.join(folder, name + 'cneg.txt'), 'w') as stream:
            stream.write('')
        truth[name] = grasps
    if defects:
        cv2.imwrite(os.path.join(folder, 'pcd0199d.tiff'), box_on_plane())
    return truth
