"""What ``launch/detector.launch.py`` starts, built from its launch arguments as plain strings.

No ``launch`` or ``launch_ros`` import: the launch file calls :func:`launch_plan` from an
``OpaqueFunction`` and turns the result into ``Node`` actions; everything else is data.

RViz cannot resolve relative topic names, so its configuration is generated per launch from the
installed template (``config/grasp_fcn.rviz``, written for a node at ``/grasp_detector``): the
node's topics are rewritten to the node's resolved name, the depth display to the depth topic
the node is given, and the fixed frame to the one asked for.
"""

from dataclasses import dataclass
import os
import re
import tempfile

#: Name of the detector node (``grasp_fcn_ros.node.NODE_NAME``, not imported: that pulls rclpy).
NODE_NAME = 'grasp_detector'
#: Fully qualified node name the topics of the RViz template are written for.
TEMPLATE_NODE = '/' + NODE_NAME
#: Depth topic of the RViz template's depth display (the launch file's default depth topic).
TEMPLATE_DEPTH_TOPIC = '/camera/camera/depth/image_rect_raw'
#: Optical frame of the RealSense depth camera (realsense2_camera 4.x): RViz's default frame.
DEFAULT_FIXED_FRAME = 'camera_depth_optical_frame'
#: Severities that ``--ros-args --log-level`` accepts.
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')

_TRUE = ('true', '1')
_FALSE = ('false', '0')
_NAME_TOKEN = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
_FRAME_ID = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_./\-]*')
_TEMPLATE_NODE_TOPIC = re.compile(r'^(\s*Value: )' + re.escape(TEMPLATE_NODE) + r'(?=/)',
                                  re.MULTILINE)
_TEMPLATE_DEPTH = re.compile(r'^(\s*Value: )' + re.escape(TEMPLATE_DEPTH_TOPIC) + r'[ \t]*$',
                             re.MULTILINE)
_FIXED_FRAME = re.compile(r'^(\s*Fixed Frame: ).*$', re.MULTILINE)


@dataclass(frozen=True)
class NodeLaunch:
    """Keyword arguments of one ``launch_ros.actions.Node``.

    :param namespace: absolute namespace (``/`` for the root).
    :param parameters: params files (paths) and dicts, later ones overriding earlier ones.
    :param remappings: ``(from, to)`` topic remappings.
    :param arguments: command-line arguments of the executable.
    """

    namespace: str
    parameters: list
    remappings: list
    arguments: list


@dataclass(frozen=True)
class LaunchPlan:
    """Everything the launch file starts.

    :param detector: the grasp_detector node.
    :param node_name: the detector's fully qualified name, e.g. ``/robot1/grasp_detector``.
    :param rviz_config_text: the generated RViz configuration, or None when RViz is not wanted.
    :param fixed_frame: RViz's fixed frame.
    :param use_sim_time: whether the nodes run on the ``/clock`` topic's time.
    """

    detector: NodeLaunch
    node_name: str
    rviz_config_text: str = None
    fixed_frame: str = DEFAULT_FIXED_FRAME
    use_sim_time: bool = False

    def rviz(self, config_path):
        """The rviz2 node, showing the configuration written to ``config_path``.

        :param config_path: file holding :attr:`rviz_config_text`.
        """
        return NodeLaunch(namespace=self.detector.namespace,
                          parameters=[{'use_sim_time': self.use_sim_time}], remappings=[],
                          arguments=rviz_arguments(config_path, self.fixed_frame))


def parse_bool(value, name):
    """A launch argument's boolean, spelt as launch's ``IfCondition`` accepts it.

    :param value: ``true``/``false``/``1``/``0`` in any case, or a bool.
    :param name: the argument's name, for the error message.
    :raises ValueError: on anything else.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'launch argument {name}:={value!r} is not a boolean (true or false)')


def resolve_namespace(namespace, base=''):
    """The absolute namespace a node launched with ``namespace`` gets, as ``launch_ros`` does it.

    :param namespace: the node's namespace: absolute (kept), relative (appended to ``base``)
        or empty (``base`` itself).
    :param base: the namespace pushed by an including launch file (``PushRosNamespace``), or ''.
    :returns: ``/`` or ``/a/b`` (no trailing slash).
    :raises ValueError: when a part is not a valid ROS name token.
    """
    namespace = (namespace or '').strip()
    if not namespace.startswith('/'):
        namespace = (base or '').strip().rstrip('/') + '/' + namespace
    tokens = [token for token in namespace.split('/') if token]
    for token in tokens:
        if not _NAME_TOKEN.fullmatch(token):
            raise ValueError(f'namespace {namespace!r}: {token!r} is not a valid ROS name token '
                             '(letters, digits and _, not starting with a digit)')
    return '/' + '/'.join(tokens)


def node_name(namespace):
    """Fully qualified name of the detector in an absolute ``namespace``."""
    return namespace.rstrip('/') + '/' + NODE_NAME


def resolve_topic(topic, namespace):
    """Absolute name of ``topic`` as seen by the detector in an absolute ``namespace``.

    :param topic: absolute (kept), private ``~/x`` (under the node) or relative (under the
        namespace).
    """
    topic = topic.strip()
    if topic.startswith('/'):
        return topic
    if topic.startswith('~/'):
        return node_name(namespace) + topic[1:]
    return namespace.rstrip('/') + '/' + topic


def log_level_arguments(log_level):
    """``--ros-args --log-level LEVEL`` for a severity, or ``LOGGER:=LEVEL``.

    :raises ValueError: when the severity is not one of :data:`LOG_LEVELS`.
    """
    text = log_level.strip()
    logger, _, severity = text.rpartition(':=')
    if severity.lower() not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level:={log_level!r}: the level is one of "
                         f"{', '.join(LOG_LEVELS)}")
    text = f'{logger}:={severity.lower()}' if logger else severity.lower()
    return ['--ros-args', '--log-level', text]


def detector_parameters(params_file, device='', model_path='', use_sim_time=False,
                        use_color=False):
    """The detector's ``parameters``: the params file, then the launch arguments' overrides.

    ``device`` and ``model_path`` override the file only when given; ``use_sim_time`` and
    ``use_color`` always reach the node.
    """
    overrides = {name: value for name, value in (('device', device),
                                                 ('model_path', model_path)) if value}
    overrides['use_sim_time'] = bool(use_sim_time)
    overrides['use_color'] = bool(use_color)
    return [params_file, overrides]


def detector_remappings(depth_topic, camera_info_topic, color_topic, use_color):
    """The detector's remappings; ``color`` only when the colour input is used.

    :raises ValueError: when the colour input is used without a colour topic.
    """
    remappings = [('depth', depth_topic), ('camera_info', camera_info_topic)]
    if use_color:
        if not color_topic:
            raise ValueError('use_color:=true needs a color_topic')
        remappings.append(('color', color_topic))
    return remappings


def rviz_config_text(template, detector_name, depth_topic, fixed_frame):
    """The RViz configuration for one launch, from the text of the template.

    Every topic under :data:`TEMPLATE_NODE` moves under ``detector_name``, the depth display
    (:data:`TEMPLATE_DEPTH_TOPIC`) shows ``depth_topic``, and the fixed frame is
    ``fixed_frame``. A configuration of the user's own is rewritten the same way, so it may be
    written for a detector at ``/grasp_detector`` too.

    :param template: text of an ``.rviz`` file.
    :param detector_name: the detector's fully qualified name, e.g. ``/robot1/grasp_detector``.
    :param depth_topic: absolute depth topic the detector subscribes to.
    :param fixed_frame: a tf frame id.
    """
    check_frame(fixed_frame)
    text = _TEMPLATE_NODE_TOPIC.sub(lambda m: m.group(1) + detector_name, template)
    text = _TEMPLATE_DEPTH.sub(lambda m: m.group(1) + depth_topic, text)
    return _FIXED_FRAME.sub(lambda m: m.group(1) + fixed_frame, text)


def check_frame(frame):
    """``frame`` when it is a usable tf frame id.

    :raises ValueError: for an empty frame or one with characters a tf frame id does not have.
    """
    if not _FRAME_ID.fullmatch(frame):
        raise ValueError(f'fixed_frame:={frame!r} is not a tf frame id (letters, digits, '
                         '_ . / -)')
    return frame


def rviz_arguments(config_path, fixed_frame):
    """rviz2's command line: the configuration file and the fixed frame."""
    return ['-d', config_path, '-f', check_frame(fixed_frame)]


def launch_plan(arguments, rviz_template=None, base_namespace=''):
    """What to start for a set of launch argument values.

    :param arguments: launch argument name -> value, as strings (``namespace``,
        ``use_sim_time``, ``log_level``, ``use_color``, ``depth_topic``, ``camera_info_topic``,
        ``color_topic``, ``params_file``, ``device``, ``model_path``, ``rviz``,
        ``fixed_frame``).
    :param rviz_template: text of the ``rviz_config`` file; needed only with ``rviz`` true.
    :param base_namespace: namespace pushed by an including launch file, or ''.
    :raises ValueError: on an argument value that cannot be used, naming it.
    """
    namespace = resolve_namespace(arguments.get('namespace', ''), base_namespace)
    use_sim_time = parse_bool(arguments.get('use_sim_time', 'false'), 'use_sim_time')
    use_color = parse_bool(arguments.get('use_color', 'false'), 'use_color')
    detector = NodeLaunch(
        namespace=namespace,
        parameters=detector_parameters(arguments['params_file'], arguments.get('device', ''),
                                       arguments.get('model_path', ''), use_sim_time,
                                       use_color),
        remappings=detector_remappings(arguments['depth_topic'], arguments['camera_info_topic'],
                                       arguments.get('color_topic', ''), use_color),
        arguments=log_level_arguments(arguments.get('log_level', 'info')))
    name = node_name(namespace)
    if not parse_bool(arguments.get('rviz', 'false'), 'rviz'):
        return LaunchPlan(detector=detector, node_name=name, use_sim_time=use_sim_time)
    if rviz_template is None:
        raise ValueError('rviz:=true needs the text of the rviz_config file')
    fixed_frame = check_frame(arguments.get('fixed_frame', DEFAULT_FIXED_FRAME))
    text = rviz_config_text(rviz_template, name,
                            resolve_topic(arguments['depth_topic'], namespace), fixed_frame)
    return LaunchPlan(detector=detector, node_name=name, rviz_config_text=text,
                      fixed_frame=fixed_frame, use_sim_time=use_sim_time)


def write_rviz_config(text, directory=None):
    """Write a generated RViz configuration to a new temporary file and return its path.

    :param directory: where to write it; None for the system's temporary folder.
    """
    handle, path = tempfile.mkstemp(prefix='grasp_fcn_', suffix='.rviz', dir=directory)
    with os.fdopen(handle, 'w') as stream:
        stream.write(text)
    return path

