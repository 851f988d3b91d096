"""ament_python packaging of ``grasp_fcn`` (the Python package is ``grasp_fcn_ros``)."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE_NAME = 'grasp_fcn'
SHARE = os.path.join('share', PACKAGE_NAME)


def files(pattern):
    """Files (not folders) matching a glob relative to this folder, sorted."""
    return sorted(path for path in glob(pattern) if os.path.isfile(path))


setup(
    name=PACKAGE_NAME,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE_NAME]),
        (SHARE, ['package.xml']),
        (os.path.join(SHARE, 'launch'), files('launch/*.launch.py')),
        (os.path.join(SHARE, 'config'), files('config/*.yaml') + files('config/*.rviz')
         + files('config/*.xml')),
        (os.path.join(SHARE, 'models'), files('models/*')),
        (os.path.join(SHARE, 'demo'), files('demo/*.md')),
        (os.path.join(SHARE, 'demo', 'frames'), files('demo/frames/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='grasp_fcn maintainers',
    maintainer_email='maintainers@grasp-fcn.invalid',
    description='Real-time grasp detection from depth images with a fully convolutional '
                'network, publishing 3-D grasp poses over ROS 2.',
    license='Apache-2.0',
    extras_require={'test': ['pytest', 'hypothesis']},
    entry_points={
        'console_scripts': [
            'detector = grasp_fcn_ros.node:main',
            'grasp-fcn = grasp_fcn_ros.cli:main',
            'demo = grasp_fcn_ros.demo:main',
        ],
    },
)
