"""``grasp-fcn bench``: tiny runs that check what it reports, never how fast anything is."""

import json
import os

import numpy as np
import pytest

from grasp_fcn_ros.bench import common, pipeline, ros
from grasp_fcn_ros.cli import main
from grasp_fcn_ros.core.runtime import nncf_installed, runtime_installed

STAGE_KEYS = {'p50', 'p99', 'max', 'mean'}


@pytest.fixture(autouse=True)
def _export_cache(tmp_path_factory, monkeypatch):
    from grasp_fcn_ros.core import export
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path_factory.getbasetemp() / 'export_cache'))


def test_tiny_pipeline_run_writes_every_key(random_model_path, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert main(['bench', '--model', random_model_path, '--frames', '2', '--warmup', '1',
                 '--backends', 'torch,torch-channels-last', '--device', 'cpu',
                 '--json', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'torch:fp32@cpu' in printed and 'torch-channels-last:fp32@cpu' in printed
    assert 'e2e p50' in printed
    report = json.loads(out.read_text())
    assert report['mode'] == 'pipeline'
    assert {'processor', 'cpu_count', 'torch', 'onnxruntime', 'openvino'} <= set(
        report['machine'])
    assert report['settings']['frames'] == 2 and report['settings']['warmup'] == 1
    assert report['settings']['distinct_frames'] == 3  # the bundled demo frames
    assert report['settings']['holes'] == 'edges'
    assert 0.0 < report['settings']['invalid_fraction'] < 0.2
    assert set(report['backends']) == {'torch:fp32@cpu', 'torch-channels-last:fp32@cpu'}
    for entry in report['backends'].values():
        for stage in pipeline.STAGES + ('e2e',):
            assert set(entry[stage]) == STAGE_KEYS, stage
            assert entry[stage]['p50'] <= entry[stage]['max']
        assert entry['fps'] > 0
        assert 0.0 <= entry['overhead_pct'] <= 100.0
        assert {'load_s', 'grasps_mean', 'backend', 'device', 'precision'} <= set(entry)
    # the speed-ups divide the reference's measurements by the other path's
    torch_entry = report['backends']['torch:fp32@cpu']
    other = report['backends']['torch-channels-last:fp32@cpu']
    assert torch_entry['fps_ratio_vs_torch'] == 1.0
    assert other['fps'] != torch_entry['fps']  # two separately timed paths
    assert other['fps_ratio_vs_torch'] == pytest.approx(other['fps'] / torch_entry['fps'])
    assert other['inference_ratio_vs_torch'] == pytest.approx(
        torch_entry['inference']['p50'] / other['inference']['p50'])
    assert other['cpu_ratio_vs_torch'] == pytest.approx(
        torch_entry['e2e_cpu']['p50'] / other['e2e_cpu']['p50'])


def test_mirror_runs_the_mirrored_view_and_says_so(random_model_path, tmp_path, capsys,
                                                    monkeypatch):
    from grasp_fcn_ros.core import ensemble

    calls = []
    predict = ensemble.AveragedBackend.predict
    monkeypatch.setattr(ensemble.AveragedBackend, 'predict',
                        lambda self, batch: calls.append(self.passes) or predict(self, batch))
    out = tmp_path / 'bench.json'
    assert main(['bench', '--model', random_model_path, '--frames', '2', '--warmup', '1',
                 '--backends', 'torch', '--device', 'cpu', '--mirror',
                 '--json', str(out)]) == 0
    assert 'with the mirrored view' in capsys.readouterr().out
    assert json.loads(out.read_text())['settings']['mirror'] is True
    assert calls == [2, 2, 2]  # every frame, warm-up included, through both views


def test_frames_are_cycled_and_stats_summarised(tmp_path):
    frames = common.load_frames(common.default_frames_dir(), 10)
    assert len(frames) == 3 and frames[0].shape == (480, 640)
    summary = common.summarise([1.0, 2.0, 3.0, 100.0])
    assert summary['p50'] == pytest.approx(2.5) and summary['max'] == 100.0
    assert common.summarise([])['p50'] is None
    with pytest.raises(FileNotFoundError):
        common.load_frames(str(tmp_path), 1)


def test_edge_holes_invalidate_depth_steps_only():
    depth = np.full((60, 80), 0.7, np.float32)
    depth[20:40, 30:50] = 0.65  # a 5 cm box on a table
    holed, fraction = common.edge_holes(depth)
    assert holed[30, 40] == pytest.approx(0.65) and holed[5, 5] == pytest.approx(0.7)
    assert holed[20, 40] == 0.0 and holed[19, 40] == 0.0  # both sides of the step
    assert fraction == pytest.approx((holed == 0).mean())
    assert 0.0 < fraction < 0.2


def test_frames_go_through_a_16uc1_image_and_back(monkeypatch):
    depth = np.array([[0.5, np.nan, np.inf], [1.2345, 0.0, 70.0]], np.float32)
    expected = np.float32([[500, 0, 0], [1235, 0, 0]]) * np.float32(0.001)  # millimetres
    path = pipeline.MessagePath()
    msg = path.encode(depth)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ('16UC1', 2, 3, 6)
    np.testing.assert_array_equal(path.decode(msg), expected)
    # without the ROS 2 message packages: the same pixels in a plain buffer
    monkeypatch.setattr(path, 'conversions', None)
    plain = path.encode(depth)
    assert bytes(plain.data) == bytes(msg.data)
    np.testing.assert_array_equal(path.decode(plain), expected)


AMX = frozenset({'avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_int8'})
ZEN3 = frozenset({'avx2', 'fma'})


def test_targets(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    targets, auto, notes = pipeline.bench_targets(['all'], 'auto', flags=ZEN3)
    assert ('torch', 'cpu', 'fp32') in targets and all(t[1] == 'cpu' for t in targets)
    assert not any(t[2] == 'bf16' for t in targets)  # no native bf16: not timed
    assert auto in targets and any(note.startswith('auto chooses') for note in notes)
    targets, auto, _ = pipeline.bench_targets(['all'], 'cpu', flags=AMX)
    if runtime_installed('openvino'):
        # AMX: int8 where NNCF can quantise, bf16 timed beside it
        fastest = 'int8' if nncf_installed() else 'bf16'
        assert ('openvino', 'cpu', 'bf16') in targets and auto == ('openvino', 'cpu', fastest)
    assert ('torch-channels-last', 'cpu', 'bf16') in targets
    assert pipeline.bench_targets(['torch'], 'cpu')[:2] == ([('torch', 'cpu', 'fp32')], None)
    # a precision the CPU cannot run natively falls back, and says so
    targets, _, notes = pipeline.bench_targets(['torch:bf16'], 'cpu', flags=ZEN3)
    assert targets == [('torch', 'cpu', 'fp32')] and 'no native bf16' in notes[0]
    # one the backend cannot run at all is left out with the reason
    targets, _, notes = pipeline.bench_targets(['torch:int8', 'torch'], 'cpu', flags=AMX)
    assert targets == [('torch', 'cpu', 'fp32')] and "cannot run precision 'int8'" in notes[0]
    with pytest.raises(ValueError, match='unknown backend'):
        pipeline.bench_targets(['tensorrt'], 'cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'Test GPU')
    targets, auto, notes = pipeline.bench_targets(['torch', 'openvino'], 'auto', flags=ZEN3)
    assert ('torch', 'cuda', 'fp32') in targets and not any(
        t[0] == 'openvino' and t[1] == 'cuda' for t in targets)
    assert any('openvino' in note for note in notes)
    assert pipeline.bench_targets(['auto'], 'auto', flags=ZEN3)[1] == ('torch', 'cuda', 'fp16')


def test_missing_model_names_the_way_out(tmp_path):
    with pytest.raises(FileNotFoundError, match='--model random'):
        common.resolve_model(str(tmp_path / 'none.pt'), str(tmp_path))


def test_ros_environment_stays_on_this_machine(monkeypatch):
    monkeypatch.delenv('ROS_DOMAIN_ID', raising=False)
    monkeypatch.delenv('FASTDDS_DEFAULT_PROFILES_FILE', raising=False)
    monkeypatch.delenv('FASTRTPS_DEFAULT_PROFILES_FILE', raising=False)
    monkeypatch.delenv('RMW_IMPLEMENTATION', raising=False)
    env, note = ros.ros_environment(transport='shm')
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert env['ROS_DOMAIN_ID'].isdigit()
    profile = open(env['FASTDDS_DEFAULT_PROFILES_FILE']).read()
    assert '<type>SHM</type>' in profile and '<type>UDP' not in profile and note
    assert '<useBuiltinTransports>false</useBuiltinTransports>' in profile
    env, note = ros.ros_environment(transport='default')
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in env and note is None


def test_node_command_sets_the_backend():
    command = ros.node_command('/m.pt', 'openvino', 'cpu')
    assert command[1:3] == ['-m', 'grasp_fcn_ros.node']
    assert 'backend:=openvino' in command and 'model_path:=/m.pt' in command
    assert 'precision:=fp32' in command
    command = ros.node_command('/m.pt', 'openvino:bf16', 'cpu')
    assert 'backend:=openvino' in command and 'precision:=bf16' in command
    assert 'precision:=auto' in ros.node_command('/m.pt', 'auto', 'cpu')
    assert 'inference_threads:=1' in ros.node_command('/m.pt', 'auto', 'cpu',
                                                      {'inference_threads': 1})


def test_tiny_ros_run(random_model_path, tmp_path, capsys, monkeypatch):
    """The real node in its own process, two frames over ROS 2."""
    pytest.importorskip('rclpy')
    monkeypatch.setenv('ROS_DOMAIN_ID', str(1 + (os.getpid() * 31 + 7) % 101))
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.environ.get('VIRTUAL_ENV', os.sys.prefix))
    out = tmp_path / 'ros.json'
    assert main(['bench', '--ros', '--model', random_model_path, '--frames', '2',
                 '--warmup', '1', '--backends', 'torch', '--device', 'cpu', '--rate', '2',
                 '--json', str(out)]) == 0
    report = json.loads(out.read_text())
    entry = report['backends']['torch']
    assert entry['published'] == 2
    # the node keeps only the newest frame: the last one is always answered
    assert 1 <= entry['received'] == 2 - entry['dropped']
    assert set(entry['round_trip']) == STAGE_KEYS
    assert set(entry['node_latency']['total']) == STAGE_KEYS
    assert report['settings']['transport'] == 'shm'
