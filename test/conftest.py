"""Shared fixtures: a random-weight checkpoint and the ROS 2 environment for node tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Discovery never leaves this machine, whatever a test starts.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'


@pytest.fixture(scope='session')
def random_model_path(tmp_path_factory):
    """A checkpoint of the real architecture with seeded random weights."""
    import torch

    from grasp_fcn_ros.core.model import GraspFCN, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('model') / 'random.pt'
    save_checkpoint(str(path), GraspFCN().eval(), {'trained': False})
    return str(path)
