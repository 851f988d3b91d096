"""The ament_python packaging, checked without colcon: setup.py, setup.cfg, package.xml."""

import configparser
import glob
import importlib
import os
import re
import runpy
import xml.etree.ElementTree as ElementTree

import pytest
import setuptools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARE = 'share/grasp_fcn'

EXEC_DEPENDS = ('rclpy', 'rcl_interfaces', 'sensor_msgs', 'geometry_msgs', 'visualization_msgs',
                'std_msgs', 'std_srvs', 'tf2_ros', 'python3-numpy', 'python3-opencv')
CONSOLE_SCRIPTS = {'detector': 'grasp_fcn_ros.node:main',
                   'grasp-fcn': 'grasp_fcn_ros.cli:main',
                   'demo': 'grasp_fcn_ros.demo:main'}
#: The ROS 2 wheels of the environment this package is tested in (SPEC, section 3).
ROS_PINS = {'ros-rclpy': '9.1.2', 'ros-rmw-fastrtps-cpp': '9.3.3', 'ros-sensor-msgs': '5.5.1',
            'ros-geometry-msgs': '5.5.1', 'ros-visualization-msgs': '5.5.1',
            'ros-std-msgs': '5.5.1'}


@pytest.fixture(scope='module')
def setup_kwargs():
    """The keyword arguments setup.py passes to ``setuptools.setup``, as colcon would see them
    (run from the package folder), without building anything."""
    captured = {}
    original = setuptools.setup
    cwd = os.getcwd()
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        os.chdir(ROOT)
        runpy.run_path(os.path.join(ROOT, 'setup.py'), run_name='__main__')
    finally:
        setuptools.setup = original
        os.chdir(cwd)
    return captured


@pytest.fixture(scope='module')
def installed(setup_kwargs):
    """Destination folder -> set of source files, from ``data_files``."""
    destinations = {}
    for folder, files in setup_kwargs['data_files']:
        destinations.setdefault(folder, set()).update(files)
    return destinations


def _files_under(folder):
    """Source files of a package folder (relative paths), skipping caches and hidden files."""
    found = set()
    for path in glob.glob(os.path.join(ROOT, folder, '*')):
        name = os.path.basename(path)
        if os.path.isfile(path) and not name.startswith('.'):
            found.add(os.path.relpath(path, ROOT))
    return found


def test_package_marker_and_manifest_are_installed(installed):
    assert installed['share/ament_index/resource_index/packages'] == {'resource/grasp_fcn'}
    assert os.path.isfile(os.path.join(ROOT, 'resource', 'grasp_fcn'))
    assert installed[SHARE] == {'package.xml'}


@pytest.mark.parametrize('folder', ['launch', 'config', 'models', 'demo', 'demo/frames'])
def test_data_files_cover_every_file_of_the_data_folders(installed, folder):
    assert installed.get(f'{SHARE}/{folder}', set()) == _files_under(folder)


def test_the_files_of_the_ros_contract_are_shipped(installed):
    assert 'launch/detector.launch.py' in installed[f'{SHARE}/launch']
    assert {'config/detector.yaml', 'config/grasp_fcn.rviz',
            'config/fastdds_shm.xml'} <= installed[f'{SHARE}/config']
    frames = installed[f'{SHARE}/demo/frames']
    for suffix in ('d.tiff', 'r.png', 'cpos.txt'):
        assert len([f for f in frames if f.endswith(suffix)]) == 3


def test_every_data_file_exists_and_is_relative(installed):
    for files in installed.values():
        for path in files:
            assert not os.path.isabs(path)
            assert os.path.isfile(os.path.join(ROOT, path)), path


def test_python_packages_exclude_the_tests(setup_kwargs):
    packages = set(setup_kwargs['packages'])
    assert {'grasp_fcn_ros', 'grasp_fcn_ros.core', 'grasp_fcn_ros.training',
            'grasp_fcn_ros.bench', 'grasp_fcn_ros.demo'} <= packages
    assert not any(p == 'test' or p.startswith('test.') for p in packages)
    assert setup_kwargs['name'] == 'grasp_fcn'
    assert setup_kwargs['extras_require'] == {'test': ['pytest', 'hypothesis']}
    assert 'tests_require' not in setup_kwargs


def test_console_scripts_point_at_importable_callables(setup_kwargs):
    scripts = {}
    for line in setup_kwargs['entry_points']['console_scripts']:
        name, target = (part.strip() for part in line.split('='))
        scripts[name] = target
    assert scripts == CONSOLE_SCRIPTS
    for target in scripts.values():
        module, function = target.split(':')
        assert callable(getattr(importlib.import_module(module), function)), target


def test_scripts_install_where_ros2_run_looks():
    config = configparser.ConfigParser()
    assert config.read(os.path.join(ROOT, 'setup.cfg'))
    assert config['develop']['script_dir'] == '$base/lib/grasp_fcn'
    assert config['install']['install_scripts'] == '$base/lib/grasp_fcn'


def test_package_xml_is_format_3_ament_python_with_the_runtime_depends(setup_kwargs):
    root = ElementTree.parse(os.path.join(ROOT, 'package.xml')).getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    assert root.findtext('name') == 'grasp_fcn'
    assert root.findtext('version') == setup_kwargs['version']
    assert root.findtext('export/build_type') == 'ament_python'
    depends = {e.text.strip() for e in root.findall('exec_depend')}
    depends |= {e.text.strip() for e in root.findall('depend')}
    missing = set(EXEC_DEPENDS) - depends
    assert not missing, f'package.xml lacks exec_depend {sorted(missing)}'
    assert 'rviz2' not in depends, 'rviz2 (Qt) must not be a hard run-time dependency'
    assert root.findtext('license')
    assert root.find('maintainer').get('email')


def test_requirements_are_pinned_and_match_the_ros_wheels():
    pins = {}
    with open(os.path.join(ROOT, 'requirements.txt')) as stream:
        for line in stream:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            match = re.fullmatch(r'([A-Za-z0-9_.\-]+)==([0-9][A-Za-z0-9_.+\-]*)', line)
            assert match, f'requirement not pinned exactly: {line}'
            pins[match.group(1).lower()] = match.group(2)
    for name, version in ROS_PINS.items():
        assert pins.get(name) == version, name
    assert pins.get('torch') == '2.13.0', 'an unpinned torch pulls a multi-GB CUDA build'
    for name in ('numpy', 'opencv-python-headless', 'matplotlib', 'pyyaml', 'pytest',
                 'hypothesis', 'ruff', 'pytest-timeout'):
        assert name in pins, name
