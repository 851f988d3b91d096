"""Launch the grasp_detector node on a RealSense-style camera, optionally with RViz2.

    ros2 launch grasp_fcn detector.launch.py
    ros2 launch grasp_fcn detector.launch.py device:=cpu rviz:=true \\
        depth_topic:=/camera/depth/image_raw camera_info_topic:=/camera/depth/camera_info

Topic defaults are those of the RealSense ROS 2 wrapper (realsense2_camera 4.x).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'grasp_fcn'


def _detector(context):
    """The detector node; device/model_path override the params file only when given."""
    overrides = {}
    for name in ('device', 'model_path'):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    parameters = [LaunchConfiguration('params_file').perform(context)]
    if overrides:
        parameters.append(overrides)
    return [Node(
        package=PACKAGE, executable='detector', name='grasp_detector', output='screen',
        emulate_tty=True, parameters=parameters,
        remappings=[('depth', LaunchConfiguration('depth_topic')),
                    ('camera_info', LaunchConfiguration('camera_info_topic')),
                    ('color', LaunchConfiguration('color_topic'))])]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument('depth_topic', default_value='/camera/camera/depth/image_rect_raw',
                              description='depth image topic (16UC1 millimetres or 32FC1 m)'),
        DeclareLaunchArgument('camera_info_topic',
                              default_value='/camera/camera/depth/camera_info',
                              description='camera_info of the depth image'),
        DeclareLaunchArgument('color_topic', default_value='/camera/camera/color/image_raw',
                              description='colour image for the debug overlay (optional)'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'detector.yaml'),
                              description='parameters of the grasp_detector node'),
        DeclareLaunchArgument('device', default_value='',
                              description="auto, cpu, cuda or cuda:N ('' = params_file)"),
        DeclareLaunchArgument('model_path', default_value='',
                              description="checkpoint file ('' = params_file, whose '' is the "
                                          'packaged model)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='start RViz2 with config/grasp_fcn.rviz'),
    ]
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                arguments=['-d', os.path.join(share, 'config', 'grasp_fcn.rviz')],
                condition=IfCondition(LaunchConfiguration('rviz')))
    return LaunchDescription(arguments + [OpaqueFunction(function=_detector), rviz])
