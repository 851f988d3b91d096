"""Backend and precision selection by machine features, and reduced precisions against fp32:
maps and top grasps within stated tolerances, int8 quantised once and cached."""

import glob
import importlib.util
import os

import numpy as np
import pytest
import torch

from grasp_fcn_ros.core import export
from grasp_fcn_ros.core.backends import create_backend
from grasp_fcn_ros.core.depth import read_depth_image
from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.devices import cpu_flags, native_bf16, native_int8
from grasp_fcn_ros.core.geometry import CORNELL_INTRINSICS
from grasp_fcn_ros.core.grasp import grasp_matches
from grasp_fcn_ros.core.model import ModelError
from grasp_fcn_ros.core.runtime import choose_runtime, VERIFIED
from grasp_fcn_ros.resources import default_calibration_dir, default_model_path

AMX = frozenset({'avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_int8', 'avx512_vnni'})
ZEN3 = frozenset({'avx2', 'fma'})
OLD_X86 = frozenset({'sse4_2'})
BF16_NO_VNNI = frozenset({'avx2', 'avx512f', 'avx512_bf16'})
CASCADE_LAKE = frozenset({'avx2', 'avx512f', 'avx512_vnni'})
HAS_OPENVINO = importlib.util.find_spec('openvino') is not None
HAS_NNCF = importlib.util.find_spec('nncf') is not None
FRAMES = sorted(glob.glob(os.path.join(default_calibration_dir(), '*d.tiff')))

#: Stated tolerances of a reduced precision against fp32 on the shipped model and the bundled
#: real frames: mean and 99th percentile of |Q - Q_fp32| on the raw quality output; the
#: reduced precision's top-1 grasp must be the same grasp as one of fp32's top TOP_K: its
#: rectangle overlapping at SAME_JACCARD or more, angles within SAME_ANGLE_DEG (on an elongated
#: object Q is nearly flat along the object, and the best centre may slide along it).
# the p99 of |dQ| comes from the steep flanks of the Q blobs, where a rounding shifts an edge
# by a fraction of a pixel: the shipped model's 0.0036 (bf16 with its input and output layers in
# fp32, mean 0.00016; all in bf16 they were 0.017 and 0.0008) and 0.031 (int8, mean 0.0019, max
# 0.14; its first two convolutions unquantised) on these frames; the previous model's int8 0.011
# (mean 0.0013). A quantisation with turned calibration frames, symmetric activations and an
# int8 input layer reached 0.0135 and 0.29 on the previous model, and its top-1 left fp32's top 5
TOLERANCES = {'bf16': (0.0006, 0.012, 0.5, 15.0), 'fp16': (0.002, 0.03, 0.5, 15.0),
              'int8': (0.003, 0.06, 0.5, 15.0)}
TOP_K = 5


@pytest.fixture(autouse=True)
def _export_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path_factory.getbasetemp() / 'export_cache'))


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


# --- selection ----------------------------------------------------------------------------------

def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_bf16 '
                    'avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n')
    flags = cpu_flags(str(info))
    assert {'avx2', 'amx_bf16', 'avx512_vnni'} <= flags
    assert native_bf16(flags) and native_int8(flags)
    assert not native_bf16(ZEN3) and not native_int8(ZEN3)
    assert cpu_flags(str(tmp_path / 'missing')) == frozenset()


@pytest.mark.parametrize('flags, openvino, nncf, expected', [
    # int8 dot products first, then native bf16, then int8 through AVX2, where NNCF can quantise
    (AMX, True, True, ('openvino', 'cpu', 'int8')),
    (AMX, True, False, ('openvino', 'cpu', 'bf16')),
    (BF16_NO_VNNI, True, True, ('openvino', 'cpu', 'bf16')),
    (CASCADE_LAKE, True, True, ('openvino', 'cpu', 'int8')),
    (ZEN3, True, True, ('openvino', 'cpu', 'int8')),
    (ZEN3, True, False, ('openvino', 'cpu', 'fp32')),
    (OLD_X86, True, True, ('openvino', 'cpu', 'fp32')),
    # PyTorch runs no int8
    (AMX, False, True, ('torch-channels-last', 'cpu', 'bf16')),
    (ZEN3, False, True, ('torch-channels-last', 'cpu', 'fp32')),
])
def test_auto_follows_the_cpu(flags, openvino, nncf, expected):
    choice = choose_runtime('auto', 'auto', 'auto', flags=flags, openvino_available=openvino,
                            nncf_available=nncf)
    assert (choice.backend, choice.device, choice.precision) == expected
    assert (_family(choice.backend), choice.precision) in VERIFIED
    assert choice.reason  # logged by the node at start-up
    if (flags, openvino, nncf) == (ZEN3, True, False):
        assert 'int8 needs NNCF' in choice.reason


def _family(backend):
    return 'torch' if backend.startswith('torch') else backend


def test_auto_on_cuda_is_torch_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'Test GPU')
    choice = choose_runtime('auto', 'auto', 'auto', flags=ZEN3, openvino_available=True)
    assert (choice.backend, choice.device, choice.precision) == ('torch', 'cuda', 'fp16')
    assert 'Test GPU' in choice.reason


def test_requested_bf16_without_native_support_falls_back_with_a_reason():
    choice = choose_runtime('torch', 'bf16', 'cpu', flags=ZEN3)
    assert choice.precision == 'fp32' and 'no native bf16' in choice.reason
    assert choose_runtime('torch', 'bf16', 'cpu', flags=AMX).precision == 'bf16'
    # int8 runs when asked for, whatever the CPU
    assert choose_runtime('openvino', 'int8', 'cpu', flags=OLD_X86).precision == 'int8'


@pytest.mark.parametrize('backend, precision, words', [
    ('torch', 'int8', "cannot run precision 'int8'"),
    ('onnxruntime', 'bf16', "cannot run precision 'bf16'"),
    ('torch', 'fp8', "unknown precision 'fp8'"),
    ('tensorflow', 'auto', "unknown backend 'tensorflow'"),
])
def test_impossible_combinations_are_refused(backend, precision, words):
    with pytest.raises(ModelError, match=words):
        choose_runtime(backend, precision, 'cpu', flags=AMX)


# --- reduced precisions against fp32 ----------------------------------------------------------

@pytest.fixture(scope='module')
def frames():
    return [read_depth_image(path) for path in FRAMES]


def _compare(backend, reference, frames, precision):
    """|dQ| statistics on identical inputs, and whether each top-1 is among fp32's top-K."""
    mean_limit, p99_limit, jaccard, angle_deg = TOLERANCES[precision]
    config = DetectorConfig()
    reduced_detector = GraspDetector(backend, config)
    reference_detector = GraspDetector(reference, DetectorConfig(
        postprocess=config.postprocess.__class__(q_threshold=0.0, max_grasps=TOP_K)))
    deltas = []
    for depth_m in frames:
        expected = reference_detector.detect(depth_m, CORNELL_INTRINSICS)
        net_input = expected.network_input[None, None]
        q_ref = np.clip(reference.predict(net_input)[0, 0], 0, 1)
        q = np.clip(backend.predict(net_input)[0, 0], 0, 1)
        deltas.append(np.abs(q - q_ref).ravel())
        got = reduced_detector.detect(depth_m, CORNELL_INTRINSICS).grasps_2d
        assert got, f'{precision}: no grasp'
        best = got[0]
        assert jaccard is None or grasp_matches(
            best, expected.grasps_2d, jaccard, np.radians(angle_deg)), (
            f'{precision}: top-1 at ({best.u:.0f}, {best.v:.0f}) is not among fp32 top-{TOP_K}')
    delta = np.concatenate(deltas)
    assert delta.mean() <= mean_limit, (precision, delta.mean())
    assert np.percentile(delta, 99) <= p99_limit, (precision, np.percentile(delta, 99))


@pytest.fixture(scope='module')
def reference():
    return create_backend(default_model_path(), 'torch', 'cpu', 'fp32')


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_torch_autocast_matches_fp32(reference, frames, precision):
    if precision == 'bf16' and not native_bf16():
        pytest.skip('needs a CPU with native bf16 (a bf16 request runs fp32 elsewhere, '
                    'test_requested_bf16_without_native_support_falls_back_with_a_reason)')
    backend = create_backend(default_model_path(), 'torch-channels-last', 'cpu', precision)
    assert backend.precision == precision
    _compare(backend, reference, frames, precision)


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_torch_autocast_runs_the_input_and_output_layers_in_fp32(reference, precision):
    backend = create_backend(default_model_path(), 'torch', 'cpu', precision)
    if backend.precision != precision:
        pytest.skip(f'{precision} runs fp32 on this CPU ({backend.choice.reason})')
    network = backend._network
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0].dtype, output.dtype)
        return hook

    network.encoder[0][0].module.register_forward_hook(record('input layer'))
    network.encoder[1][0].register_forward_hook(record('second level'))
    for index, head in enumerate(network.heads):
        head.module[0].register_forward_hook(record(f'head {index}'))
    maps = backend.predict(np.zeros((1, 1, 400, 400), np.float32))
    assert maps.dtype == np.float32
    reduced = {'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]
    assert seen.pop('second level')[1] == reduced  # the body runs in the reduced precision
    assert len(seen) == 5
    assert all(dtypes == (torch.float32, torch.float32) for dtypes in seen.values()), seen
    # the backend's own network is untouched (the wrapped copy runs)
    assert isinstance(backend.model.encoder[0][0], torch.nn.Conv2d)


@pytest.mark.skipif(not (HAS_OPENVINO and native_bf16()), reason='needs OpenVINO and a CPU '
                    'with native bf16')
def test_openvino_bf16_matches_fp32(reference, frames):
    _compare(create_backend(default_model_path(), 'openvino', 'cpu', 'bf16'), reference,
             frames, 'bf16')


@pytest.mark.skipif(not (HAS_OPENVINO and HAS_NNCF), reason='needs OpenVINO and NNCF')
def test_int8_is_quantised_once_then_cached(reference, frames, capfd):
    import logging

    import nncf  # noqa: F401  (its logger's own level, set on import)

    calibration = frames[:1]
    nncf_level = logging.getLogger('nncf').level
    first = create_backend(default_model_path(), 'openvino', 'cpu', 'int8',
                           calibration=calibration)
    assert first.precision == 'int8' and not first.cached
    # NNCF's information lines stay out of a node's log; its own level is put back
    out, err = capfd.readouterr()
    assert 'INFO:nncf' not in out + err
    assert logging.getLogger('nncf').level == nncf_level
    assert 'int8' in os.path.basename(first.path) and os.path.isfile(first.path)
    again = create_backend(default_model_path(), 'openvino', 'cpu', 'int8',
                           calibration=calibration)
    assert again.cached and again.path == first.path
    assert again.prepare_s < first.prepare_s
    # other calibration frames are another quantisation, not the cached one
    other = create_backend(default_model_path(), 'openvino', 'cpu', 'int8',
                           calibration=frames[1:2])
    assert other.path != first.path
    # the default calibration: every bundled real frame
    _compare(create_backend(default_model_path(), 'openvino', 'cpu', 'int8',
                            calibration=default_calibration_dir()), reference, frames, 'int8')


def test_calibration_inputs_are_upright_and_mirrored_never_turned(frames, monkeypatch):
    from grasp_fcn_ros.core import quantize

    inputs = quantize.calibration_inputs(frames[:1], 64)
    assert len(inputs) == 2 * len(quantize.CALIBRATION_CROP_FRACTIONS)
    for upright, mirrored in zip(inputs[::2], inputs[1::2]):
        assert upright.shape == (1, 1, 64, 64) and upright.dtype == np.float32
        np.testing.assert_array_equal(mirrored, upright[..., ::-1])
    # an oblique camera's table slopes along the rows: no input has it sloping along columns
    for net_input in inputs:
        rows, columns = np.abs(np.diff(net_input[0, 0].mean(axis=1))).sum(), np.abs(
            np.diff(net_input[0, 0].mean(axis=0))).sum()
        assert rows > columns
    # the quantisation settings are part of the cache key
    digest = quantize.inputs_digest(inputs)
    monkeypatch.setitem(quantize.QUANTIZATION_SETTINGS, 'preset', 'performance')
    assert quantize.inputs_digest(inputs) != digest


def test_calibration_paths_prefer_the_cornell_layout_and_spread_over_the_folder(tmp_path):
    from grasp_fcn_ros.core.quantize import calibration_paths

    with pytest.raises(ModelError, match='does not exist'):
        calibration_paths(tmp_path / 'missing')
    (tmp_path / 'readme.txt').write_text('not depth')
    with pytest.raises(ModelError, match='no depth frames'):
        calibration_paths(tmp_path)
    for i in range(10):
        (tmp_path / f'frame{i:02d}.png').write_bytes(b'')
    assert len(calibration_paths(tmp_path)) == 10  # nothing is read
    spread = calibration_paths(tmp_path, limit=4)
    assert [os.path.basename(p) for p in spread] == [
        'frame00.png', 'frame03.png', 'frame06.png', 'frame09.png']
    (tmp_path / 'pcd0100d.tiff').write_bytes(b'')  # Cornell's depth beside its other files
    assert [os.path.basename(p) for p in calibration_paths(tmp_path)] == ['pcd0100d.tiff']


@pytest.mark.skipif(not HAS_OPENVINO, reason='needs OpenVINO')
def test_leading_convolutions_follow_every_path_from_the_input():
    import openvino as ov
    import openvino.opset13 as ops

    from grasp_fcn_ros.core.quantize import leading_convolutions

    def conv(source, name, channels_in):
        weights = ops.constant(np.ones((2, channels_in, 3, 3), np.float32))
        node = ops.convolution(source, weights, [1, 1], [1, 1], [1, 1], [1, 1])
        node.set_friendly_name(name)
        return node

    depth = ops.parameter([1, 1, 8, 8], np.float32, name='depth')
    # two convolutions read the input (one through an activation), a third reads both, a
    # fourth the third, and the sum of the two first comes back at the end (a skip)
    first, second = conv(depth, 'a', 1), conv(ops.relu(depth), 'b', 1)
    both = ops.add(ops.relu(first), second)
    third = conv(both, 'c', 2)
    model = ov.Model([ops.add(conv(third, 'd', 2), both)], [depth])
    assert leading_convolutions(model, 0) == []
    assert sorted(leading_convolutions(model, 1)) == ['a', 'b']
    assert sorted(leading_convolutions(model, 2)) == ['a', 'b', 'c']
    assert sorted(leading_convolutions(model, 5)) == ['a', 'b', 'c', 'd']


@pytest.mark.skipif(not HAS_OPENVINO, reason='needs OpenVINO')
@pytest.mark.parametrize('output_layer', [False, True])
def test_the_network_cut_into_precision_stages_computes_the_same_maps(random_model_path,
                                                                      tmp_path, output_layer):
    import openvino as ov

    from grasp_fcn_ros.core.model import load_model

    model, _ = load_model(random_model_path)
    path = export.cached_export(model, 'openvino', str(tmp_path))
    core = ov.Core()
    stages = export.split_precision_stages(core, path, output_layer=output_layer)
    assert len(stages) == (3 if output_layer else 2)

    def convolutions(stage):
        return [op for op in stage.get_ordered_ops() if op.get_type_name() == 'Convolution']

    # the first stage is the input layer and its bias, the last (if cut) the output layer:
    # one convolution each, writing the four maps at full size
    assert len(convolutions(stages[0])) == 1
    if output_layer:
        assert len(convolutions(stages[2])) == 1
        assert list(stages[2].output(0).get_partial_shape().to_shape()) == [1, 4, 400, 400]
    fp32 = {'INFERENCE_PRECISION_HINT': 'f32'}
    whole = core.compile_model(path, 'CPU', fp32)
    compiled = [core.compile_model(stage, 'CPU', fp32) for stage in stages]
    image = np.random.default_rng(0).normal(0.0, 0.05, (1, 1, 400, 400)).astype(np.float32)
    expected = whole(image)[0]
    got = image
    for stage in compiled:
        got = stage(got)[0]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_int8_without_calibration_is_refused():
    pytest.importorskip('openvino')
    with pytest.raises(ModelError, match='calibration'):
        create_backend(default_model_path(), 'openvino', 'cpu', 'int8')


def test_compare_runtimes_reports_accuracy_and_map_differences(reference):
    from grasp_fcn_ros.training.dataset import find_samples
    from grasp_fcn_ros.training.evaluate import compare_runtimes, InputNoise, runtime_table

    samples = find_samples(default_calibration_dir())[0]  # the bundled real frames
    assert len(samples) == 3
    # fp16 autocast: a reduced precision every CPU runs (bf16 runs fp32 where not native)
    fp16 = create_backend(default_model_path(), 'torch', 'cpu', 'fp16')
    rows = compare_runtimes({'fp32': GraspDetector(reference),
                             'again': GraspDetector(reference), 'fp16': GraspDetector(fp16),
                             'no noise': GraspDetector(InputNoise(reference, 0.0)),
                             'noise': GraspDetector(InputNoise(reference, 1e-4))},
                            samples, intrinsics=CORNELL_INTRINSICS)
    assert [r['name'] for r in rows] == ['fp32', 'again', 'fp16', 'no noise', 'noise']
    for same in (rows[1], rows[3]):
        assert same['q_max_abs'] == 0.0 and same['top1_same'] == 1.0
        assert same['result'].accuracy == rows[0]['result'].accuracy
        assert same['changes'] == [] and same['lost'] == same['gained'] == 0
    assert 0.0 < rows[2]['q_mean_abs'] <= rows[2]['q_max_abs']
    # 0.1 mm of depth noise moves the maps about as much as bf16 does (mean |dQ| 1e-4 to 1e-3)
    assert 1e-5 < rows[4]['q_mean_abs'] < 1e-3
    reference_result = rows[0]['result']
    for row in rows:
        # the changed verdicts account for every difference in accuracy
        images = row['result'].images
        for j, accuracy in row['result'].accuracy.items():
            lost = sum(c['jaccard'] == j and c['reference_iou'] > j for c in row['changes'])
            gained = sum(c['jaccard'] == j and c['iou'] > j for c in row['changes'])
            assert round(images * (reference_result.accuracy[j] - accuracy)) == lost - gained
        for change in row['changes']:
            assert (change['reference_iou'] > change['jaccard']) != (
                change['iou'] > change['jaccard'])
    table = runtime_table(rows)
    assert 'fp16' in table and 'same top-1' in table and 'verdicts lost / gained' in table


@pytest.mark.skipif(not (HAS_OPENVINO and HAS_NNCF), reason='needs OpenVINO and NNCF')
def test_cli_exports_an_int8_and_an_fp16_openvino_network(tmp_path, random_model_path):
    import openvino as ov

    from grasp_fcn_ros.cli import main

    int8 = tmp_path / 'int8.xml'
    assert main(['export', '--model', random_model_path, '--format', 'openvino', '--precision',
                 'int8', '--output', str(int8)]) == 0
    ops = ov.Core().read_model(str(int8)).get_ordered_ops()
    assert any(op.get_type_name() == 'FakeQuantize' for op in ops)
    # the first two convolutions read unquantised activations (the first the depth itself),
    # every other convolution int8 activations
    convolutions = [op for op in ops if op.get_type_name() in ('Convolution',
                                                                 'ConvolutionBackpropData')]
    sources = [op.input(0).get_source_output().get_node().get_type_name()
               for op in convolutions]
    assert sources[0] == 'Parameter' and sources[1] != 'FakeQuantize', sources[:3]
    assert sources[2:] and all(source == 'FakeQuantize' for source in sources[2:]), sources
    assert main(['export', '--model', random_model_path, '--format', 'openvino', '--precision',
                 'fp16', '--output', str(tmp_path / 'fp16.xml')]) == 0
    assert main(['export', '--model', random_model_path, '--format', 'openvino', '--output',
                 str(tmp_path / 'fp32.xml')]) == 0
    fp16_size, fp32_size = ((tmp_path / f'{name}.bin').stat().st_size for name in ('fp16', 'fp32'))
    assert fp16_size < 0.6 * fp32_size  # the weights in half the bytes
    with pytest.raises(ModelError, match="cannot export format 'onnx' in precision 'int8'"):
        export.export_model(random_model_path, 'onnx', precision='int8')
