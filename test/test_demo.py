"""The demo: its pure helpers, and one end-to-end run against the real node process."""

import json
import os
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
import torch

from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.model import GraspFCN, save_checkpoint
from grasp_fcn_ros.core.projection import project_grasp
from grasp_fcn_ros.demo import compare, describe_model
from grasp_fcn_ros.demo.player import (
    demo_intrinsics,
    node_grasps,
    node_parameters,
    sent_depth,
)
from grasp_fcn_ros.node import DEFAULTS
from grasp_fcn_ros.ros_conversions import grasps_to_array

from scenes import box_on_plane, INTRINSICS
from synthetic_cornell import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_node_details_become_the_grasps_that_were_projected():
    depth = box_on_plane()
    truth = [Grasp2D(330.0, 240.0, np.deg2rad(25), 60.0, 0.9),
             Grasp2D(310.0, 230.0, np.deg2rad(-80), 35.0, 0.4)]
    poses = [project_grasp(g, depth, INTRINSICS) for g in truth]
    grasps_2d, grasps_3d = node_grasps(grasps_to_array(poses), demo_intrinsics(640, 480))
    for expected, got in zip(truth, grasps_2d):
        assert (got.u, got.v) == pytest.approx((expected.u, expected.v))
        assert got.angle == pytest.approx(expected.angle, abs=1e-6)
        assert got.width_px == pytest.approx(expected.width_px, rel=1e-5)
        assert got.quality == pytest.approx(expected.quality, abs=1e-6)
    for expected, got in zip(poses, grasps_3d):
        np.testing.assert_allclose(got.position_m, expected.position_m, atol=1e-6)
        assert got.depth_m == pytest.approx(0.65, abs=1e-6)
    assert compare(grasps_3d, poses) == (True, 'same grasps')
    assert not compare(grasps_3d[:1], poses)[0]
    moved = [project_grasp(Grasp2D(333.0, 240.0, 0.4, 60.0, 0.9), depth, INTRINSICS), poses[1]]
    agree, reason = compare(moved, poses)
    assert not agree and 'grasp 1' in reason


def test_sent_depth_is_what_the_node_decodes():
    depth = np.array([[0.6504, np.nan, np.inf], [1.2, 0.0, 70.0]], np.float32)
    np.testing.assert_array_equal(sent_depth(depth, '32FC1', 0.001), depth)
    # millimetres; NaN, +inf, 0 and depths beyond 65.535 m all become 0 (no depth)
    np.testing.assert_array_equal(sent_depth(depth, '16UC1', 0.001),
                                  np.float32([[650, 0, 0], [1200, 0, 0]]) * np.float32(0.001))


def test_node_parameters_read_the_file_as_the_node_does(tmp_path):
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    q_threshold: 0.4\n    max_grasps: 3\n'
                      '/grasp_detector:\n  ros__parameters:\n    max_grasps: 7\n'
                      '/other_node:\n  ros__parameters:\n    depth_radius: 9\n')
    values = node_parameters(str(params), '/models/m.pt')
    assert (values['q_threshold'], values['max_grasps']) == (0.4, 7)  # the node's own wins
    assert values['depth_radius'] == DEFAULTS['depth_radius']  # another node's is ignored
    assert values['model_path'] == '/models/m.pt'
    assert set(values) == set(DEFAULTS)


def test_describe_model_tells_trained_from_untrained(tmp_path):
    torch.manual_seed(0)
    model = GraspFCN()
    untrained = str(tmp_path / 'untrained.pt')
    save_checkpoint(untrained, model, {'trained': False})
    trained, text = describe_model(untrained)
    assert not trained and 'UNTRAINED' in text

    ours = str(tmp_path / 'trained.pt')
    save_checkpoint(ours, model, {'epoch': 49, 'loss': 0.01, 'val_accuracy': 0.9,
                                  'train': {'dataset': 'cornell', 'epochs': 50}})
    trained, text = describe_model(ours)
    assert trained
    for words in ('TRAINED', '50 of 50 epochs', 'data cornell', 'validation accuracy 90.0 %'):
        assert words in text


@pytest.mark.timeout(300)
def test_demo_plays_frames_to_the_real_node(tmp_path, random_model_path):
    """The demo end to end on a synthetic Cornell-layout frame with random weights."""
    write_dataset(str(tmp_path / 'frames'), count=1, defects=False)
    output = tmp_path / 'out'
    env = dict(os.environ)
    env.update({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
                'ROS_DOMAIN_ID': str(1 + (os.getpid() + zlib.crc32(b'demo')) % 101),
                'PYTHONPATH': os.pathsep.join(p for p in (ROOT, env.get('PYTHONPATH')) if p)})
    done = subprocess.run(
        [sys.executable, '-m', 'grasp_fcn_ros.demo', '--output', str(output),
         '--model', random_model_path, '--frames-dir', str(tmp_path / 'frames'),
         '--encoding', '16UC1', '--timeout', '120'],
        env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any('UNTRAINED' in line for line in lines)
    summary = [line for line in lines if line.startswith('pcd0100:')]
    assert len(summary) == 1 and 'node latency' in summary[0]
    assert 'node == offline' in summary[0]
    assert 'the node stopped cleanly on SIGINT (exit code 0)' in lines

    image = cv2.imread(str(output / 'pcd0100.png'))
    assert image is not None and image.shape[0] > 600 and image.shape[1] > 800
    with open(output / 'pcd0100.json') as stream:
        record = json.load(stream)
    assert record['frame'] == 'pcd0100'
    assert record['frame_id'] == 'camera_depth_optical_frame'
    assert record['model']['trained'] is False
    assert record['offline']['agrees_with_node'] is True
    assert {'grasps', 'timings_ms', 'crop', 'round_trip_ms'} <= set(record)
    assert record['timings_ms'].get('inference', 0) > 0
    assert os.path.isfile(output / 'node.log')


def test_demo_refuses_a_missing_model(tmp_path):
    from grasp_fcn_ros.demo import main

    assert main(['--model', str(tmp_path / 'nothing.pt'), '--output', str(tmp_path)]) == 1
