"""A non-editable install finds its data: the wheel built from setup.py, installed into a fresh
venv and run from outside the source tree without AMENT_PREFIX_PATH."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Folders of a working copy that a package build does not need.
NOT_PACKAGED = ('.git', '.venv', 'runs', 'output', 'build', 'install', 'log', '__pycache__',
                '.pytest_cache', '.hypothesis', '.ruff_cache', '*.egg-info')


def _run(*command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope='module')
def installed_venv(tmp_path_factory):
    """A venv (no pip, no site packages) with the package's wheel installed into it."""
    pytest.importorskip('setuptools')
    base = tmp_path_factory.mktemp('install')
    source = base / 'src'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_PACKAGED))
    _run(sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '--no-build-isolation',
         '--wheel-dir', str(base / 'wheels'), str(source))
    venv = base / 'venv'
    _run(sys.executable, '-m', 'venv', '--without-pip', str(venv))
    wheels = [str(path) for path in (base / 'wheels').glob('*.whl')]
    _run(sys.executable, '-m', 'pip', '--python', str(venv / 'bin' / 'python'), 'install',
         '--quiet', '--no-deps', *wheels)
    return venv


def test_pip_install_into_a_venv_finds_the_model_and_frames(installed_venv, tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ('AMENT_PREFIX_PATH', 'PYTHONPATH', 'VIRTUAL_ENV')}
    script = ('import os\n'
              'from grasp_fcn_ros import resources\n'
              'print(resources.share_directory())\n'
              'print(resources.default_model_path())\n'
              'print(os.path.isdir(os.path.join(resources.share_directory(), "demo", '
              '"frames")))\n')
    out = _run(str(installed_venv / 'bin' / 'python'), '-c', script, cwd=str(tmp_path),
               env=env).split('\n')
    share = str(installed_venv / 'share' / 'grasp_fcn')
    assert out[0] == share
    assert out[1] == os.path.join(share, 'models', 'grasp_fcn_cornell.pt')
    assert os.path.isfile(out[1]) == os.path.isfile(
        os.path.join(ROOT, 'models', 'grasp_fcn_cornell.pt'))
    assert out[2] == 'True'


def test_source_tree_comes_first():
    from grasp_fcn_ros.resources import share_candidates, share_directory
    assert share_directory() == ROOT
    assert next(iter(share_candidates())) == ROOT
