"""Inference backends: the exported runtimes match PyTorch, exports are cached, devices and
CUDA-only options switch correctly (on a machine without a GPU as much as with one)."""

import glob
import importlib.util
import os
import tempfile

import numpy as np
import pytest
import torch

from grasp_fcn_ros.core import export
from grasp_fcn_ros.core.backends import (
    BACKENDS,
    create_backend,
    TORCH_DEFAULT_THREADS,
    TorchBackend,
    TorchPlan,
)
from grasp_fcn_ros.core.depth import read_depth_image
from grasp_fcn_ros.core.detector import GraspDetector, prepare_input
from grasp_fcn_ros.core.devices import resolve_device
from grasp_fcn_ros.core.model import GraspFCN, load_model, ModelError, save_checkpoint
from grasp_fcn_ros.resources import default_model_path, share_directory

from scenes import box_on_plane, INTRINSICS

#: Largest difference allowed between a backend's maps and PyTorch eager's.
TOLERANCE = 1e-3
RUNTIMES = {'onnxruntime': 'onnxruntime', 'openvino': 'openvino'}
FRAMES = sorted(glob.glob(os.path.join(share_directory(), 'demo', 'frames', '*d.tiff')))


def _runtime_missing(backend):
    module = RUNTIMES.get(backend)
    return module is not None and importlib.util.find_spec(module) is None


AVAILABLE = [pytest.param(b, marks=pytest.mark.skipif(_runtime_missing(b),
                                                      reason=f'{b} is not installed'))
             for b in BACKENDS]
#: Every backend but plain eager PyTorch, which is the reference they are compared with.
OTHER_THAN_EAGER = [b for b in AVAILABLE if b.values[0] != 'torch']


@pytest.fixture(autouse=True)
def _export_cache(tmp_path_factory, monkeypatch):
    """Exports go to a per-session folder, never to the user's ~/.cache."""
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path_factory.getbasetemp() / 'export_cache'))


@pytest.fixture(scope='session')
def bn_model_path(tmp_path_factory):
    """Random weights with non-trivial BatchNorm statistics, so that folding them is tested."""
    torch.manual_seed(1)
    model = GraspFCN().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp('bn_model') / 'bn.pt'
    save_checkpoint(str(path), model, {'trained': False})
    return str(path)


@pytest.fixture(scope='session')
def network_inputs():
    """Network inputs (N, 1, 400, 400) of the bundled real frames, as the detector makes them
    (a synthetic scene stands in when the frames are missing)."""
    detector = GraspDetector(TorchBackend(GraspFCN()))
    images = [read_depth_image(path) for path in FRAMES] or [box_on_plane()]
    inputs = []
    for depth_m in images:
        transform = detector.transform_for(depth_m.shape[1], depth_m.shape[0])
        inputs.append(prepare_input(depth_m, transform, 0.1, 5.0))
    return np.stack(inputs)[:, None]


@pytest.fixture(scope='session')
def eager_outputs(random_model_path, bn_model_path, network_inputs):
    """Checkpoint label -> (path, PyTorch eager output on the network inputs); the shipped
    model is included when it exists. The reference is the network module itself in eval mode,
    not a backend."""
    models = {'random': random_model_path, 'random-bn': bn_model_path}
    if os.path.isfile(default_model_path()):
        models['shipped'] = default_model_path()
    outputs = {}
    for label, path in models.items():
        model, _ = load_model(path)
        with torch.no_grad():
            outputs[label] = (path, model.eval()(torch.from_numpy(network_inputs)).numpy())
    return outputs


def test_bundled_frames_are_used():
    assert len(FRAMES) >= 3, 'the demo frames are part of the project'


@pytest.mark.parametrize('backend', OTHER_THAN_EAGER)
def test_backend_maps_match_torch_eager(backend, eager_outputs, network_inputs):
    for label, (path, reference) in eager_outputs.items():
        output = create_backend(path, backend, 'cpu').predict(network_inputs)
        assert output.shape == reference.shape == (len(network_inputs), 4, 400, 400)
        assert output.dtype == np.float32
        for channel, name in enumerate(GraspFCN.OUTPUTS):
            error = np.abs(output[:, channel] - reference[:, channel]).max()
            assert error < TOLERANCE, f'{backend} {name} map differs by {error} ({label})'
        assert np.abs(reference).max() > 1e-2  # the comparison is not between zeros


@pytest.mark.parametrize('backend', AVAILABLE)
def test_backend_interface(backend, random_model_path):
    model = create_backend(random_model_path, backend, 'cpu')
    assert model.name == backend
    assert str(model.device) == 'cpu'
    assert model.config.input_size == 400
    assert model.meta == {'trained': False}
    out = model.predict(np.zeros((2, 1, 400, 400), np.float64))
    assert out.shape == (2, 4, 400, 400) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    model.warmup(1)


def test_detector_runs_on_an_exported_backend(random_model_path):
    pytest.importorskip('openvino')
    depth = box_on_plane()
    reference = GraspDetector(create_backend(random_model_path, 'torch', 'cpu'))
    detector = GraspDetector(create_backend(random_model_path, 'openvino', 'cpu'))
    expected = reference.detect(depth, INTRINSICS)
    detection = detector.detect(depth, INTRINSICS)
    assert set(detection.timings_ms) == set(GraspDetector.STAGES)
    # smoothing is linear and clipping 1-Lipschitz: the quality maps stay as close as the raw
    np.testing.assert_allclose(detection.maps.quality, expected.maps.quality, atol=TOLERANCE)


def test_inference_graph_merges_the_heads_and_keeps_the_outputs(bn_model_path):
    model, _ = load_model(bn_model_path)
    graph = export.inference_graph(model)
    # one head of four maps, each computed as four sub-pixel phases
    assert len(graph.heads) == 1 and graph.heads[0].conv.out_channels == 4 * 4
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in graph.modules())
    assert len(model.heads) == 4  # the original is untouched
    x = torch.randn(1, 1, 400, 400) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize('kernel, stride, padding, output_padding, bias', [
    (9, 1, 4, 0, True), (3, 1, 1, 0, False),  # the decoder's first level
    (3, 2, 1, 0, True),  # 13 -> 25
    (5, 2, 2, 1, True), (3, 2, 1, 1, True),  # 25 -> 50 ... and the heads
    (4, 2, 1, 0, True), (5, 3, 1, 2, False),  # even kernels, other strides
])
def test_sub_pixel_convolution_equals_the_transposed_one(kernel, stride, padding,
                                                         output_padding, bias):
    torch.manual_seed(kernel * 10 + stride)
    deconv = torch.nn.ConvTranspose2d(3, 5, kernel, stride, padding, output_padding,
                                      bias=bias).eval()
    conv = export.SubPixelConv(deconv).eval()
    for size in (13, 25, 6):
        x = torch.randn(2, 3, size, size + 1)
        with torch.no_grad():
            expected, got = deconv(x), conv(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sub_pixel_convolution_refuses_what_it_cannot_compute():
    with pytest.raises(ModelError, match='square'):
        export.SubPixelConv(torch.nn.ConvTranspose2d(2, 2, 3, 2, groups=2))


def test_torch_backend_threads_set_pytorchs_threads(random_model_path):
    model, _ = load_model(random_model_path)
    before = torch.get_num_threads()
    try:
        assert TorchBackend(model, 'cpu', threads=1).threads == 1 == torch.get_num_threads()
        assert TorchBackend(model, 'cpu').threads == 1  # None: left as they are
        assert TorchBackend(model, 'cpu', threads=0).threads == TORCH_DEFAULT_THREADS
        assert torch.get_num_threads() == TORCH_DEFAULT_THREADS
    finally:
        torch.set_num_threads(before)


def test_torch_backend_can_run_the_inference_graph(random_model_path, network_inputs):
    plain = create_backend(random_model_path, 'torch', 'cpu')
    fused = create_backend(random_model_path, 'torch-channels-last', 'cpu', fuse_heads=True)
    assert len(fused.model.heads) == 1
    np.testing.assert_allclose(fused.predict(network_inputs[:1]),
                               plain.predict(network_inputs[:1]), atol=TOLERANCE)


# --- exports and their cache --------------------------------------------------------------------

def test_export_onnx_has_a_fixed_input_and_opset_17(random_model_path, tmp_path):
    onnx = pytest.importorskip('onnx')
    path = export.export_model(random_model_path, 'onnx', str(tmp_path / 'net.onnx'))
    graph = onnx.load(path)
    assert any(op.domain in ('', 'ai.onnx') and op.version == 17 for op in graph.opset_import)
    (inp,) = graph.graph.input
    assert inp.name == export.INPUT_NAME
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 1, 400, 400]
    assert [o.name for o in graph.graph.output] == [export.OUTPUT_NAME]


def test_export_openvino_defaults_beside_the_checkpoint(random_model_path, tmp_path):
    pytest.importorskip('openvino')
    checkpoint = tmp_path / 'net.pt'
    checkpoint.write_bytes(open(random_model_path, 'rb').read())
    path = export.export_model(str(checkpoint), 'openvino')
    assert path == str(tmp_path / 'net.xml')
    assert os.path.isfile(path) and os.path.isfile(str(tmp_path / 'net.bin'))
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.export-')]
    with pytest.raises(ModelError, match='xml'):
        export.export_model(str(checkpoint), 'openvino', str(tmp_path / 'net.ir'))
    with pytest.raises(ModelError, match='format'):
        export.export_model(str(checkpoint), 'tflite')


def test_cli_export(random_model_path, tmp_path, capsys):
    from grasp_fcn_ros.cli import main

    out = tmp_path / 'cli.onnx'
    assert main(['export', '--model', random_model_path, '--format', 'onnx',
                 '--output', str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out


def test_a_checkpoint_exported_in_fp16_is_half_the_file_and_loads_into_fp32(
        bn_model_path, tmp_path, capsys):
    from grasp_fcn_ros.cli import main

    out = tmp_path / 'shipped.pt'
    assert main(['export', '--model', bn_model_path, '--format', 'checkpoint',
                 '--precision', 'fp16', '--output', str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert os.path.getsize(out) < 0.55 * os.path.getsize(bn_model_path)
    stored = torch.load(out, weights_only=True)
    assert stored['meta']['stored_precision'] == 'fp16' and 'optimiser' not in stored['meta']
    source, _ = load_model(bn_model_path)
    shipped, _ = load_model(str(out))
    reference = source.state_dict()
    for key, value in shipped.state_dict().items():
        assert value.dtype == reference[key].dtype  # fp32 network, integer counters kept
        expected = reference[key].half().to(value.dtype) if value.is_floating_point() \
            else reference[key]
        torch.testing.assert_close(value, expected, rtol=0, atol=0)
    with pytest.raises(ModelError, match='overwrite'):
        export.export_model(str(out), 'checkpoint', str(out), 'fp16')
    with pytest.raises(ModelError, match='checkpoint: fp32, fp16'):
        export.export_model(bn_model_path, 'checkpoint', str(tmp_path / 'x.pt'), 'int8')


def test_exports_are_cached_by_weights(random_model_path, bn_model_path, tmp_path,
                                       monkeypatch):
    pytest.importorskip('onnxruntime')
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / 'cache'))
    first = create_backend(random_model_path, 'onnxruntime', 'cpu')
    assert first.path.startswith(str(tmp_path / 'cache'))

    def no_export(*args, **kwargs):
        raise AssertionError('the cached export should have been used')

    with monkeypatch.context() as patch:
        patch.setattr(export, 'export_onnx', no_export)
        again = create_backend(random_model_path, 'onnxruntime', 'cpu')
    assert again.path == first.path
    other = create_backend(bn_model_path, 'onnxruntime', 'cpu')
    assert other.path != first.path
    model, _ = load_model(random_model_path)
    assert export.model_digest(model) == export.model_digest(load_model(random_model_path)[0])


def test_unusable_cache_folder_falls_back_to_the_temporary_folder(random_model_path, tmp_path,
                                                                  monkeypatch):
    pytest.importorskip('onnx')
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('')
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    model, _ = load_model(random_model_path)
    path = export.cached_export(model, 'onnx', cache_dir=str(blocker / 'cache'))
    assert path.startswith(str(tmp_path / 'tmp')) and os.path.isfile(path)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / 'a'))
    assert export.cache_root() == str(tmp_path / 'a')
    monkeypatch.delenv(export.CACHE_ENV)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert export.cache_root() == str(tmp_path / 'xdg' / 'grasp_fcn')


# --- devices ------------------------------------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def test_devices_without_cuda(no_cuda):
    assert resolve_device('cpu') == 'cpu'
    assert resolve_device(' AUTO ') == 'cpu'
    for name in ('cuda', 'cuda:0', 'cuda:1'):
        with pytest.raises(ModelError, match='CUDA is not available'):
            resolve_device(name)
    with pytest.raises(ModelError, match='unknown device'):
        resolve_device('tpu')


def test_devices_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert resolve_device('auto') == 'cuda'
    assert resolve_device('cuda:1') == 'cuda:1'
    assert resolve_device('cpu') == 'cpu'


def test_create_backend_on_cuda_refuses_clearly_without_gpu(no_cuda, random_model_path):
    for backend in ('torch', 'torch-channels-last', 'onnxruntime'):
        with pytest.raises(ModelError, match='CUDA is not available'):
            create_backend(random_model_path, backend, 'cuda')
    auto = create_backend(random_model_path, 'torch', 'auto')
    assert str(auto.device) == 'cpu'


def test_auto_on_cuda_replays_a_cuda_graph_and_an_explicit_backend_does_not(
        monkeypatch, random_model_path):
    from grasp_fcn_ros.core import backends

    built = []

    class Recorder:
        def __init__(self, model, device='cpu', **options):
            built.append((device, options))

    monkeypatch.setattr(backends, 'TorchBackend', Recorder)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'Test GPU')
    create_backend(random_model_path, 'auto', 'auto', 'auto')
    create_backend(random_model_path, 'torch', 'cuda', 'fp16')
    create_backend(random_model_path, 'torch', 'cpu', 'fp32')
    (auto_device, auto), (_, explicit), (_, cpu) = built
    assert auto_device == 'cuda' and auto['cuda_graphs'] is True
    assert 'cuda_graphs' not in explicit
    assert 'cuda_graphs' not in cpu


@pytest.mark.parametrize('backend', [b for b in AVAILABLE if b.values[0] in RUNTIMES])
def test_exported_backends_choose_the_cpu_for_auto(backend, no_cuda, random_model_path):
    assert create_backend(random_model_path, backend, 'auto').device == 'cpu'


def test_openvino_is_cpu_only(monkeypatch):
    assert export.exported_device('openvino', 'auto') == 'cpu'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert export.exported_device('openvino', 'auto') == 'cpu'
    with pytest.raises(ModelError, match='CPU only'):
        export.exported_device('openvino', 'cuda')
    with pytest.raises(ModelError, match='unknown device'):
        export.exported_device('openvino', 'gpu')


def test_onnxruntime_auto_needs_a_cuda_provider_for_cuda(monkeypatch):
    ort = pytest.importorskip('onnxruntime')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(ort, 'get_available_providers', lambda: ['CPUExecutionProvider'])
    assert export.exported_device('onnxruntime', 'auto') == 'cpu'
    assert export.exported_device('onnxruntime', 'cuda') == 'cuda'  # refused when built


def test_unknown_options_and_precisions_are_refused(random_model_path):
    with pytest.raises(ModelError, match='unknown option'):
        create_backend(random_model_path, 'torch', 'cpu', warp_speed=True)
    with pytest.raises(ModelError, match='unknown option'):
        create_backend(random_model_path, 'openvino', 'cpu', cuda_graphs=True)
    with pytest.raises(ModelError, match='precision'):
        create_backend(random_model_path, 'torch', 'cpu', precision='fp8')
    if not _runtime_missing('openvino'):
        with pytest.raises(ModelError, match='precision'):
            create_backend(random_model_path, 'openvino', 'cpu', precision='int4')


# --- the CUDA path's switches ------------------------------------------------------------------

def test_cuda_only_options_are_off_on_the_cpu():
    plan = TorchPlan.for_device('cpu', cuda_graphs=True, pinned=True)
    assert plan == TorchPlan(precision='fp32', cuda_graphs=False, compile_mode=None,
                             pinned=False)
    assert plan.autocast_dtype is None
    # reduced precision is autocast on the CPU too (fast where the CPU has native bf16)
    assert TorchPlan.for_device('cpu', precision='bf16').autocast_dtype is torch.bfloat16
    assert TorchPlan.for_device('cpu', compile=True).compile_mode == 'default'


def test_cuda_plan_selects_autocast_graphs_and_pinned_buffers():
    plan = TorchPlan.for_device('cuda', precision='fp16', cuda_graphs=True)
    assert plan.autocast_dtype is torch.float16
    assert plan.cuda_graphs and plan.pinned and plan.compile_mode is None
    assert TorchPlan.for_device('cuda', precision='bf16').autocast_dtype is torch.bfloat16
    assert TorchPlan.for_device('cuda').autocast_dtype is None
    assert not TorchPlan.for_device('cuda', pinned=False).pinned
    compiled = TorchPlan.for_device('cuda', cuda_graphs=True, compile=True)
    # torch.compile's reduce-overhead mode captures CUDA graphs itself
    assert compiled.compile_mode == 'reduce-overhead' and not compiled.cuda_graphs


def test_torch_backend_with_cuda_options_runs_plain_on_the_cpu(random_model_path,
                                                               network_inputs):
    reference = create_backend(random_model_path, 'torch', 'cpu')
    backend = create_backend(random_model_path, 'torch', 'cpu', cuda_graphs=True, pinned=True)
    assert backend.plan == TorchPlan()
    assert not backend.half
    np.testing.assert_array_equal(backend.predict(network_inputs[:1]),
                                  reference.predict(network_inputs[:1]))
    assert backend._graph is None and backend._host_in is None


def test_half_is_fp16_on_cuda():
    plan_backend = TorchBackend.__new__(TorchBackend)
    plan_backend.plan = TorchPlan.for_device('cuda', precision='fp16')
    assert plan_backend.half
