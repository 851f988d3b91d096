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
    from grasp_fcn_ros.core.model import save_random_checkpoint

    return save_random_checkpoint(str(tmp_path_factory.mktemp('model') / 'random.pt'), seed=0)
