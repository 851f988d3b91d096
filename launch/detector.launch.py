"""Launch the grasp_detector node on a RealSense-style camera, optionally with RViz2.

    ros2 launch grasp_fcn detector.launch.py
    ros2 launch grasp_fcn detector.launch.py device:=cpu rviz:=true namespace:=arm \\
        depth_topic:=/camera/depth/image_raw camera_info_topic:=/camera/depth/camera_info

Topic defaults are those of the RealSense ROS 2 wrapper (realsense2_camera 4.x). With
``rviz:=true`` the RViz configuration is generated for this launch from ``rviz_config`` (topics
under the node's resolved name, the depth display on ``depth_topic``) and written to a
temporary file. What is started is computed by :mod:`grasp_fcn_ros.launch_config`.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from grasp_fcn_ros.launch_config import (
    DEFAULT_FIXED_FRAME,
    launch_plan,
    LOG_LEVELS,
    NODE_NAME,
    parse_bool,
    TEMPLATE_DEPTH_TOPIC,
    write_rviz_config,
)

PACKAGE = 'grasp_fcn'
#: The package's share folder (``launch/`` and ``config/`` are installed side by side).
SHARE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch_setup(context):
    """The detector node and, with ``rviz:=true``, RViz2 on a configuration made for it."""
    values = {name: LaunchConfiguration(name).perform(context) for name in (
        'namespace', 'use_sim_time', 'log_level', 'use_color', 'depth_topic',
        'camera_info_topic', 'color_topic', 'params_file', 'device', 'model_path', 'rviz',
        'rviz_config', 'fixed_frame')}
    template = None
    if parse_bool(values['rviz'], 'rviz'):
        with open(values['rviz_config']) as stream:
            template = stream.read()
    # a namespace pushed by an including launch file (PushRosNamespace) prefixes a relative one
    plan = launch_plan(values, template, context.launch_configurations.get('ros_namespace', ''))
    detector = plan.detector
    actions = [Node(package=PACKAGE, executable='detector', name=NODE_NAME, output='screen',
                    emulate_tty=True, namespace=detector.namespace,
                    parameters=detector.parameters, remappings=detector.remappings,
                    arguments=detector.arguments)]
    if plan.rviz_config_text is not None:
        rviz = plan.rviz(write_rviz_config(plan.rviz_config_text))
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                            namespace=rviz.namespace, parameters=rviz.parameters,
                            arguments=rviz.arguments))
    return actions


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the grasp_detector node (and of RViz)'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use the /clock topic as time (a bag, a simulator)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description=f"{', '.join(LOG_LEVELS)}, or LOGGER:=LEVEL"),
        DeclareLaunchArgument('depth_topic', default_value=TEMPLATE_DEPTH_TOPIC,
                              description='depth image topic (16UC1 millimetres or 32FC1 m)'),
        DeclareLaunchArgument('camera_info_topic',
                              default_value='/camera/camera/depth/camera_info',
                              description='camera_info of the depth image'),
        DeclareLaunchArgument('use_color', default_value='false',
                              description='draw ~/debug_image on color_topic instead of on the '
                                          'depth image (needs colour aligned with depth)'),
        DeclareLaunchArgument('color_topic', default_value='/camera/camera/color/image_raw',
                              description='colour image for the debug overlay (with use_color)'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(SHARE, 'config', 'detector.yaml'),
                              description='parameters of the grasp_detector node'),
        DeclareLaunchArgument('device', default_value='',
                              description="auto, cpu, cuda or cuda:N ('' = params_file)"),
        DeclareLaunchArgument('model_path', default_value='',
                              description="checkpoint file ('' = params_file, whose '' is the "
                                          'packaged model)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='start RViz2 on the detector outputs'),
        DeclareLaunchArgument('rviz_config',
                              default_value=os.path.join(SHARE, 'config', 'grasp_fcn.rviz'),
                              description='RViz configuration, its /grasp_detector/ topics '
                                          "moved under the node's namespace"),
        DeclareLaunchArgument('fixed_frame', default_value=DEFAULT_FIXED_FRAME,
                              description="RViz's fixed frame (the depth camera's optical "
                                          'frame by default)'),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_launch_setup)])
