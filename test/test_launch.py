"""launch/detector.launch.py, its RViz configuration and grasp_fcn_ros.launch_config.

The plan of what the launch file starts (parameters, remappings, arguments, the generated RViz
configuration) is checked without launch_ros; the launch description itself is built wherever
ROS 2 launch and launch_ros are importable.
"""

import ast
import glob
import importlib.util
import os
import py_compile
import re
import tempfile

import pytest
import yaml

from grasp_fcn_ros import launch_config
from grasp_fcn_ros.launch_config import (
    DEFAULT_FIXED_FRAME,
    launch_plan,
    log_level_arguments,
    parse_bool,
    resolve_namespace,
    resolve_topic,
    rviz_config_text,
    TEMPLATE_DEPTH_TOPIC,
    TEMPLATE_NODE,
    write_rviz_config,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, 'launch', 'detector.launch.py')
RVIZ = os.path.join(ROOT, 'config', 'grasp_fcn.rviz')
README = os.path.join(ROOT, 'README.md')
PARAMS_FILE = os.path.join(ROOT, 'config', 'detector.yaml')

#: Every launch argument and its default (None: a path into the package's share folder).
ARGUMENTS = {
    'namespace': '', 'use_sim_time': 'false', 'log_level': 'info',
    'depth_topic': '/camera/camera/depth/image_rect_raw',
    'camera_info_topic': '/camera/camera/depth/camera_info', 'use_color': 'false',
    'color_topic': '/camera/camera/color/image_raw', 'params_file': None, 'device': '',
    'model_path': '', 'rviz': 'false', 'rviz_config': None,
    'fixed_frame': 'camera_depth_optical_frame',
}
#: The detector's outputs that RViz shows, relative to the node.
NODE_DISPLAYS = {'markers': 'rviz_default_plugins/MarkerArray',
                 'grasps': 'rviz_default_plugins/PoseArray',
                 'best_grasp': 'rviz_default_plugins/Pose',
                 'quality_image': 'rviz_default_plugins/Image',
                 'debug_image': 'rviz_default_plugins/Image'}


def arguments(**overrides):
    """Launch argument values as the launch file passes them: every one, as strings."""
    values = {name: default for name, default in ARGUMENTS.items()}
    values['params_file'] = PARAMS_FILE
    values['rviz_config'] = RVIZ
    values.update(overrides)
    return values


def template():
    with open(RVIZ) as stream:
        return stream.read()


def displays(text):
    """Display class and topic of every display with a topic, from an .rviz file's text."""
    manager = yaml.safe_load(text)['Visualization Manager']
    return [(d['Class'], d['Topic']['Value']) for d in manager['Displays'] if 'Topic' in d]


def fixed_frame(text):
    return yaml.safe_load(text)['Visualization Manager']['Global Options']['Fixed Frame']


def declared_arguments():
    """Names of the DeclareLaunchArgument calls of the launch file."""
    with open(LAUNCH) as stream:
        tree = ast.parse(stream.read())
    return [node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, 'id', '') ==
            'DeclareLaunchArgument']


# --- the launch file and the README -----------------------------------------------------------

def test_launch_file_compiles_and_declares_every_argument_once():
    py_compile.compile(LAUNCH, doraise=True)
    declared = declared_arguments()
    assert sorted(declared) == sorted(ARGUMENTS)


def test_the_readme_lists_every_launch_argument_with_its_default():
    with open(README) as stream:
        text = stream.read()
    text = text[text.index('Launch arguments'):text.index('### Topics')]
    rows = dict(re.findall(r'^\| `(\w+)` \| ([^|]*) \|', text, flags=re.MULTILINE))
    assert set(ARGUMENTS) <= set(rows), sorted(set(ARGUMENTS) - set(rows))
    for name, default in ARGUMENTS.items():
        if default is None:
            assert 'config/' in rows[name], name
        elif default == '':
            assert "''" in rows[name], name
        else:
            assert f'`{default}`' in rows[name], name


# --- the RViz template ------------------------------------------------------------------------

def test_the_rviz_template_shows_every_output_of_the_node():
    shown = displays(template())
    for topic, display_class in NODE_DISPLAYS.items():
        assert (display_class, f'{TEMPLATE_NODE}/{topic}') in shown, topic
    assert ('rviz_default_plugins/Image', TEMPLATE_DEPTH_TOPIC) in shown
    assert fixed_frame(template()) == DEFAULT_FIXED_FRAME == ARGUMENTS['fixed_frame']


def test_every_topic_of_the_rviz_template_is_rewritten_per_launch():
    """Only the node's topics and the depth topic: the generation moves each of them."""
    for _, topic in displays(template()):
        assert topic.startswith(TEMPLATE_NODE + '/') or topic == TEMPLATE_DEPTH_TOPIC, topic


def test_the_template_is_written_for_the_default_arguments():
    assert ARGUMENTS['depth_topic'] == TEMPLATE_DEPTH_TOPIC
    plan = launch_plan(arguments(rviz='true'), template())
    assert plan.rviz_config_text == template()


def test_the_node_name_is_the_node_modules():
    from grasp_fcn_ros.node import NODE_NAME

    assert launch_config.NODE_NAME == NODE_NAME


# --- the generated RViz configuration ---------------------------------------------------------

@pytest.mark.parametrize('namespace, base, resolved', [
    ('robot1', '', '/robot1'),
    ('/robot1/', '', '/robot1'),
    ('arm/left', '', '/arm/left'),
    ('robot1', '/cell', '/cell/robot1'),
    ('', 'cell', '/cell'),
    ('/robot1', '/cell', '/robot1'),
])
def test_the_namespace_lands_in_every_topic_of_the_generated_rviz(namespace, base, resolved):
    plan = launch_plan(arguments(namespace=namespace, rviz='true'), template(), base)
    assert plan.node_name == f'{resolved}/grasp_detector'
    assert plan.detector.namespace == resolved
    shown = displays(plan.rviz_config_text)
    assert len(shown) == len(displays(template()))
    # every topic is the node's, under its resolved name, or the camera's depth topic (absolute
    # by default, so outside the namespace)
    for _, topic in shown:
        assert topic.startswith(plan.node_name + '/') or topic == TEMPLATE_DEPTH_TOPIC, topic
    for topic, display_class in NODE_DISPLAYS.items():
        assert (display_class, f'{resolved}/grasp_detector/{topic}') in shown, topic
    assert f'Value: {TEMPLATE_NODE}/' not in plan.rviz_config_text


def test_the_depth_display_shows_the_depth_topic_the_node_gets():
    plan = launch_plan(arguments(namespace='robot1', rviz='true', depth_topic='/d435/depth'),
                       template())
    assert ('rviz_default_plugins/Image', '/d435/depth') in displays(plan.rviz_config_text)
    plan = launch_plan(arguments(namespace='robot1', rviz='true', depth_topic='depth/image'),
                       template())
    assert ('rviz_default_plugins/Image', '/robot1/depth/image') in \
        displays(plan.rviz_config_text)


def test_resolve_topic():
    assert resolve_topic('/a/b', '/ns') == '/a/b'
    assert resolve_topic('a/b', '/ns') == '/ns/a/b'
    assert resolve_topic('a', '/') == '/a'
    assert resolve_topic('~/grasps', '/ns') == '/ns/grasp_detector/grasps'


def test_the_fixed_frame_reaches_rviz_arguments_and_its_configuration():
    plan = launch_plan(arguments(rviz='true', fixed_frame='world'), template())
    assert fixed_frame(plan.rviz_config_text) == 'world'
    rviz = plan.rviz('/tmp/generated.rviz')
    assert rviz.arguments == ['-d', '/tmp/generated.rviz', '-f', 'world']
    default = launch_plan(arguments(rviz='true'), template()).rviz('/x.rviz')
    assert default.arguments == ['-d', '/x.rviz', '-f', 'camera_depth_optical_frame']


def test_a_fixed_frame_that_would_break_the_configuration_is_refused():
    for frame in ('', 'a b', 'frame: x', 'a#b'):
        with pytest.raises(ValueError, match='fixed_frame'):
            launch_plan(arguments(rviz='true', fixed_frame=frame), template())


def test_rviz_runs_in_the_node_namespace_on_the_same_clock():
    plan = launch_plan(arguments(rviz='true', namespace='robot1', use_sim_time='true'),
                       template())
    rviz = plan.rviz('/x.rviz')
    assert rviz.namespace == '/robot1'
    assert rviz.parameters == [{'use_sim_time': True}]


def test_without_rviz_there_is_no_configuration_and_no_template_is_needed():
    plan = launch_plan(arguments(rviz='false'))
    assert plan.rviz_config_text is None
    with pytest.raises(ValueError, match='rviz_config'):
        launch_plan(arguments(rviz='true'))


def test_rviz_config_text_leaves_foreign_topics_alone():
    text = 'Displays:\n  - Topic:\n      Value: /other/topic\n'
    assert rviz_config_text(text, '/ns/grasp_detector', '/depth', 'world') == text


def test_write_rviz_config_writes_a_new_file_each_time(tmp_path):
    first = write_rviz_config('a: 1\n', str(tmp_path))
    second = write_rviz_config('a: 2\n', str(tmp_path))
    assert first != second and first.endswith('.rviz')
    with open(first) as stream:
        assert stream.read() == 'a: 1\n'


# --- the detector node ------------------------------------------------------------------------

@pytest.mark.parametrize('text, value', [('true', True), ('True', True), ('1', True),
                                         ('false', False), ('FALSE', False), ('0', False)])
def test_use_sim_time_and_use_color_reach_the_parameters(text, value):
    plan = launch_plan(arguments(use_sim_time=text, use_color=text))
    params_file, overrides = plan.detector.parameters
    assert params_file == PARAMS_FILE
    assert overrides['use_sim_time'] is value
    assert overrides['use_color'] is value


def test_device_and_model_path_override_the_params_file_only_when_given():
    plan = launch_plan(arguments())
    assert set(plan.detector.parameters[1]) == {'use_sim_time', 'use_color'}
    plan = launch_plan(arguments(device='cpu', model_path='/m.pt'))
    assert plan.detector.parameters[1]['device'] == 'cpu'
    assert plan.detector.parameters[1]['model_path'] == '/m.pt'


def test_the_color_remapping_is_made_only_with_use_color():
    plan = launch_plan(arguments())
    assert dict(plan.detector.remappings) == {
        'depth': ARGUMENTS['depth_topic'], 'camera_info': ARGUMENTS['camera_info_topic']}
    plan = launch_plan(arguments(use_color='true', color_topic='/rgb'))
    assert dict(plan.detector.remappings)['color'] == '/rgb'
    with pytest.raises(ValueError, match='color_topic'):
        launch_plan(arguments(use_color='true', color_topic=''))


def test_a_boolean_argument_that_is_not_one_is_refused_by_name():
    for name in ('use_sim_time', 'use_color', 'rviz'):
        with pytest.raises(ValueError, match=name):
            launch_plan(arguments(**{name: 'yes'}), template())
    assert parse_bool(True, 'x') is True


@pytest.mark.parametrize('level, expected', [('info', 'info'), ('DEBUG', 'debug'),
                                             ('warn', 'warn'),
                                             ('grasp_detector:=error', 'grasp_detector:=error')])
def test_log_level_reaches_the_ros_arguments(level, expected):
    plan = launch_plan(arguments(log_level=level))
    assert plan.detector.arguments == ['--ros-args', '--log-level', expected]


def test_an_unknown_log_level_is_refused():
    for level in ('loud', '', 'grasp_detector:=loud'):
        with pytest.raises(ValueError, match='log_level'):
            log_level_arguments(level)


def test_the_default_namespace_is_the_root():
    plan = launch_plan(arguments())
    assert plan.detector.namespace == '/'
    assert plan.node_name == '/grasp_detector'


@pytest.mark.parametrize('namespace', ['1robot', 'a b', 'a-b', 'a//b/~'])
def test_an_invalid_namespace_is_refused(namespace):
    with pytest.raises(ValueError, match='namespace'):
        resolve_namespace(namespace)


# --- the launch description, where ROS 2 launch is installed -----------------------------------

def _launch_missing():
    """Why the launch description cannot be built here, or None when it can.

    The repository's own ``launch/`` folder makes ``import launch`` succeed as an empty
    namespace package, so a real ``launch`` is one with a file behind it.
    """
    if importlib.util.find_spec('launch_ros') is None:
        return 'launch_ros is not installed (not on PyPI; a ROS 2 installation provides it)'
    launch = importlib.util.find_spec('launch')
    if launch is None or not launch.has_location:
        return 'only the repository launch/ folder is importable as launch, not ROS 2 launch'
    return None


def _load_launch_file():
    spec = importlib.util.spec_from_file_location('detector_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(_launch_missing() is not None, reason=str(_launch_missing()))
def test_launch_description_declares_every_argument_with_its_default():
    from launch import LaunchContext
    from launch.launch_description import LaunchDescription
    from launch.utilities import perform_substitutions

    description = _load_launch_file().generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = {a.name: a for a in description.get_launch_arguments()}
    assert set(declared) == set(ARGUMENTS)
    context = LaunchContext()
    for name, default in ARGUMENTS.items():
        value = perform_substitutions(context, declared[name].default_value)
        if default is None:
            assert os.path.isfile(value), (name, value)
        else:
            assert value == default, name


@pytest.mark.skipif(_launch_missing() is not None, reason=str(_launch_missing()))
@pytest.mark.parametrize('rviz', ['false', 'true'])
def test_launch_description_starts_the_detector_and_rviz_on(rviz, monkeypatch, tmp_path):
    from launch import LaunchContext
    from launch.actions import OpaqueFunction
    from launch_ros.actions import Node

    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    description = _load_launch_file().generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update({'namespace': 'robot1', 'rviz': rviz,
                                          'use_sim_time': 'true', 'use_color': 'true',
                                          'log_level': 'debug', 'fixed_frame': 'world'})
    for argument in description.get_launch_arguments():
        argument.execute(context)  # the defaults of the arguments not given
    setups = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    assert len(setups) == 1
    actions = setups[0].execute(context)
    assert all(isinstance(action, Node) for action in actions)
    assert [a.node_executable for a in actions] == (['detector', 'rviz2'] if rviz == 'true'
                                                    else ['detector'])
    written = glob.glob(os.path.join(str(tmp_path), 'grasp_fcn_*.rviz'))
    if rviz == 'true':
        assert len(written) == 1
        with open(written[0]) as stream:
            text = stream.read()
        assert ('rviz_default_plugins/Pose', '/robot1/grasp_detector/best_grasp') in \
            displays(text)
        assert fixed_frame(text) == 'world'
    else:
        assert written == []
