"""The demo's output: per frame ``<output>/<frame>.png`` (depth, Q map, angle map, and the
grasps the node published), ``<output>/<frame>.json`` and a one-line summary."""

from dataclasses import replace
import json
import os

import numpy as np

from .player import NODE_NAME


def write_frame(output, frame, played, offline_detection, agree, reason, encoding, model_info):
    """Write a played frame's figure and JSON file.

    The grasps and timings are the node's; the Q and angle maps come from the offline detection
    of the same depth.

    :param frame: ``(name, depth_m, rgb or None)``.
    :param played: :class:`~grasp_fcn_ros.demo.player.PlayedFrame`.
    :param agree: whether the node and the offline detector agree, ``reason`` says why not.
    """
    from ..visualize import detection_to_json, save_detection_figure

    name, depth_m, rgb = frame
    height, width = depth_m.shape
    header, intrinsics, answer = played.header, played.intrinsics, played.answer
    shown = replace(offline_detection, grasps_2d=played.grasps_2d,
                    grasps_3d=played.grasps_3d, timings_ms=answer['timings_ms'])
    untrained = '' if model_info['trained'] else ' (UNTRAINED weights)'
    save_detection_figure(os.path.join(output, f'{name}.png'), depth_m, shown, rgb,
                          title=f'{name}: grasps published by the {NODE_NAME} node{untrained}; '
                                'Q and angle maps offline')
    record = detection_to_json(shown)
    offline_record = detection_to_json(offline_detection)
    record.update({
        'frame': name, 'frame_id': answer['grasps'].header.frame_id,
        'stamp': {'sec': header.stamp.sec, 'nanosec': header.stamp.nanosec},
        'depth_encoding': encoding,
        'intrinsics': {'fx': intrinsics.fx, 'fy': intrinsics.fy, 'cx': intrinsics.cx,
                       'cy': intrinsics.cy, 'width': width, 'height': height},
        'model': model_info,
        'round_trip_ms': round(answer['round_trip_ms'], 3),
        'sends': answer['sends'],
        'offline': {'agrees_with_node': agree, 'detail': reason,
                    'grasps': offline_record['grasps'],
                    'timings_ms': offline_record['timings_ms']},
    })
    with open(os.path.join(output, f'{name}.json'), 'w') as stream:
        json.dump(record, stream, indent=2)


def summary_line(name, grasps_3d, answer, offline_detection, agree, reason, q_threshold):
    """One line per frame: grasps, the best one in metres, node latency, agreement."""
    if grasps_3d:
        g = grasps_3d[0]
        x, y, z = g.position_m
        found = (f'{len(grasps_3d)} grasps, best q={g.quality:.2f} at '
                 f'({x:+.3f}, {y:+.3f}, {z:.3f}) m, width {100 * g.width_m:.1f} cm')
    else:
        peak = float(np.max(offline_detection.maps.quality))
        found = f'0 grasps (none with Q >= q_threshold {q_threshold}; max Q {peak:.2f})'
    timings = answer['timings_ms']
    if 'total' in timings:
        latency = (f"node latency {timings['total']:.0f} ms receive-to-publish (inference "
                   f"{timings.get('inference', float('nan')):.0f} ms), "
                   f"{answer['round_trip_ms']:.0f} ms round trip")
    else:
        latency = f"node latency {answer['round_trip_ms']:.0f} ms round trip"
    verdict = 'node == offline' if agree else f'node != offline: {reason}'
    if answer['sends'] > 1:
        verdict += f" (frame sent {answer['sends']} times)"
    return f'{name}: {found}; {latency}; {verdict}'
