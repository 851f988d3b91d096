"""Shared fixtures: a random-weight checkpoint and the ROS 2 environment for node tests."""

import os
import sys

from hypothesis import settings
import pytest

sys.path.insert(0, os.path.dirname(__file__))

# CI draws the same examples on every run (seeded by each test), so a result there is
# reproducible; elsewhere each run draws new ones and may find what CI's draws do not.
settings.register_profile('ci', derandomize=True, database=None)
if os.environ.get('CI'):
    settings.load_profile('ci')

# Discovery never leaves this machine, whatever a test starts.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'


@pytest.fixture(scope='session')
def random_model_path(tmp_path_factory):
    """A checkpoint of the real architecture with seeded random weights."""
    from grasp_fcn_ros.core.model import save_random_checkpoint

    return save_random_checkpoint(str(tmp_path_factory.mktemp('model') / 'random.pt'), seed=0)


#: Test modules that start worker processes of their own (DataLoader workers, torch
#: multiprocessing, gloo process groups): they run first, before other modules load OpenVINO
#: and ONNX Runtime into the test process, whose thread pools make a later fork or process
#: group set-up crash the test process.
RUN_FIRST = ('test_train_fast.py',)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: os.path.basename(str(item.fspath)) not in RUN_FIRST)
