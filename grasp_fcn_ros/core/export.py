"""Exported runtimes: the network as ONNX or OpenVINO IR, and backends that run them.

The network is exported with a fixed 1 x 1 x S x S input (S = ``input_size``, 400), the only
shape the detector feeds it. Exports made for a backend are cached, keyed by a digest of the
weights and architecture, under :func:`cache_root`, so a node started with the ``openvino`` or
``onnxruntime`` backend converts the network once and loads the cached file afterwards. Nothing
is ever downloaded.

The exported graph is :func:`inference_graph`: the network with its four output heads (each a
16 -> 1 transposed convolution and a BatchNorm) merged into one 16 -> 4 transposed convolution
with the BatchNorms folded in, and every transposed convolution written as a convolution
(:class:`SubPixelConv`). A convolution with a single output channel vectorises badly;
merged, the heads take about a sixth of the time (measured with OpenVINO on this package's
development CPU: the whole network 17 % faster). OpenVINO's CPU plugin runs transposed
convolutions in floating point even where NNCF quantised their inputs; as convolutions the
decoder runs in int8 too (the int8 network twice as fast on an AMX CPU, 21 against 42 ms). The
outputs match the PyTorch network to about 1e-6.

The other BatchNorms are left to the runtimes: the network applies ReLU *before* BatchNorm, so
they cannot be folded into the preceding convolution, and folding them into the next one is exact
only without zero padding, which every layer here has. OpenVINO fuses each
convolution-ReLU-BatchNorm into a single convolution with post-ops (and folds the BatchNorms that
follow a convolution directly); ONNX Runtime folds the latter and leaves the former as separate
passes.
"""

import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings

import numpy as np
import torch
from torch import nn

from .devices import check_options, native_bf16, resolve_device, warm_up
from .model import load_model, ModelError, save_checkpoint

#: Formats :func:`export_model` writes.
FORMATS = ('onnx', 'openvino', 'checkpoint')
#: ONNX opset of the export (torch 2.13's TorchScript exporter, ``dynamo=False``).
ONNX_OPSET = 17
INPUT_NAME = 'depth'
OUTPUT_NAME = 'maps'
#: Bumped when the export itself changes, so older cached files are not reused.
EXPORT_VERSION = 2
#: Environment variable overriding the cache folder.
CACHE_ENV = 'GRASP_FCN_CACHE'
#: Precisions of :class:`OpenVINOBackend` -> OpenVINO's ``INFERENCE_PRECISION_HINT`` (the
#: int8 network's remaining layers run in f32; ``f32`` and ``f16`` are accepted as aliases).
OPENVINO_PRECISIONS = {'fp32': 'f32', 'bf16': 'bf16', 'fp16': 'f16', 'int8': 'f32',
                       'f32': 'f32', 'f16': 'f16'}


def cpu_threads():
    """CPU cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def cache_root():
    """Folder of cached exports: ``$GRASP_FCN_CACHE``, else ``$XDG_CACHE_HOME/grasp_fcn``,
    else ``~/.cache/grasp_fcn``."""
    if os.environ.get(CACHE_ENV):
        return os.path.expanduser(os.environ[CACHE_ENV])
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'grasp_fcn')


def model_digest(model):
    """SHA-256 (hex) of a network's architecture and weights: the key of its cached exports.

    The width calibration (``width_scale``) is left out: post-processing applies it, the
    exported graph is the same with any.

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`.
    """
    digest = hashlib.sha256()
    config = model.config.to_dict()
    config.pop('width_scale', None)
    header = {'export_version': EXPORT_VERSION, 'opset': ONNX_OPSET, 'config': config}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{value.dtype}:{tuple(value.shape)}'.encode())
        digest.update(value.numpy().tobytes() if value.dtype != torch.bfloat16
                      else value.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def merged_heads(heads):
    """One transposed convolution equivalent to the network's heads, BatchNorms folded in.

    :param heads: the ``heads`` ModuleList of a :class:`~grasp_fcn_ros.core.model.GraspFCN`:
        each a ``Sequential(ConvTranspose2d(C, 1, ...), BatchNorm2d(1))``.
    :returns: a ``ConvTranspose2d(C, len(heads), ...)`` in eval mode.
    """
    first = heads[0][0]
    merged = nn.ConvTranspose2d(first.in_channels, len(heads), first.kernel_size, first.stride,
                                padding=first.padding, output_padding=first.output_padding)
    weights, biases = [], []
    with torch.no_grad():
        for head in heads:
            conv, bn = head[0], head[1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            weights.append(conv.weight * scale.view(1, -1, 1, 1))
            biases.append((bias - bn.running_mean) * scale + bn.bias)
        merged.weight.copy_(torch.cat(weights, dim=1))
        merged.bias.copy_(torch.cat(biases))
    return merged.eval()


class SubPixelConv(nn.Module):
    """A transposed convolution computed as a convolution (exact to float rounding).

    Stride 1: the convolution with the kernel flipped and its channel axes swapped. Stride
    ``s``: output pixel ``s m + r`` (per axis) reads input pixels ``m + d`` only, through the
    kernel taps ``r + p - s d``; one convolution computes all ``s x s`` phases as ``s^2``
    times the output channels, a pixel shuffle interleaves them, and a crop gives the
    transposed convolution's output size (``s * in + k - 2 p + output_padding - s``).

    :param deconv: an ``nn.ConvTranspose2d`` with square kernel and stride, groups 1,
        dilation 1.
    """

    def __init__(self, deconv):
        super().__init__()
        stride, kernel = deconv.stride[0], deconv.kernel_size[0]
        pad, out_pad = deconv.padding[0], deconv.output_padding[0]
        if (deconv.groups != 1 or deconv.dilation != (1, 1) or deconv.stride != (stride,) * 2
                or deconv.kernel_size != (kernel,) * 2 or deconv.padding != (pad,) * 2
                or deconv.output_padding != (out_pad,) * 2):
            raise ModelError('SubPixelConv takes square, ungrouped, undilated transposed '
                             'convolutions')
        weight = deconv.weight.detach()  # (in, out, k, k)
        c_in, c_out = weight.shape[:2]
        bias = (deconv.bias.detach() if deconv.bias is not None
                else torch.zeros(c_out, dtype=weight.dtype, device=weight.device))
        self.stride = stride
        self.extra = kernel - 2 * pad + out_pad - stride
        # input offsets d a phase reads: tap = r + pad - stride * d, 0 <= tap < kernel
        offsets = [(r + pad - tap) // stride for r in range(stride) for tap in range(kernel)
                   if (r + pad - tap) % stride == 0]
        half = max(-min(offsets), max(offsets))
        size = 2 * half + 1
        conv_weight = torch.zeros(c_out * stride * stride, c_in, size, size,
                                  dtype=weight.dtype, device=weight.device)
        for r_y in range(stride):
            for r_x in range(stride):
                for j_y in range(size):
                    tap_y = r_y + pad - stride * (j_y - half)
                    for j_x in range(size):
                        tap_x = r_x + pad - stride * (j_x - half)
                        if 0 <= tap_y < kernel and 0 <= tap_x < kernel:
                            # pixel shuffle: channel c * s^2 + r_y * s + r_x -> (c, r_y, r_x)
                            conv_weight[r_y * stride + r_x::stride * stride, :, j_y, j_x] = (
                                weight[:, :, tap_y, tap_x].t())
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, size, padding=half).to(
            device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv_weight)
            self.conv.bias.copy_(bias.repeat_interleave(stride * stride))
        self.shuffle = nn.PixelShuffle(stride) if stride > 1 else None
        # an output longer than stride * in needs phases past the input's last pixel
        self.tail = max(-(-self.extra // stride), 0)

    def forward(self, x):
        height, width = x.shape[-2:]
        if self.shuffle is not None and self.tail:
            x = nn.functional.pad(x, (0, self.tail, 0, self.tail))
        y = self.conv(x)
        if self.shuffle is None:
            return y
        return self.shuffle(y)[..., :self.stride * height + self.extra,
                               :self.stride * width + self.extra]


def _convolutions_only(module):
    """Replace every ``ConvTranspose2d`` under ``module`` by its :class:`SubPixelConv`."""
    for name, child in module.named_children():
        if isinstance(child, nn.ConvTranspose2d):
            setattr(module, name, SubPixelConv(child))
        else:
            _convolutions_only(child)
    return module


def inference_graph(model):
    """A copy of the network for inference only: eval mode, the heads merged
    (:func:`merged_heads`), transposed convolutions as convolutions (:class:`SubPixelConv`).
    Same outputs as ``model`` to float rounding.

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`.
    """
    graph = copy.deepcopy(model).eval()
    # forward concatenates the heads' outputs: one head with four channels gives the same maps
    graph.heads = nn.ModuleList([merged_heads(model.heads).to(next(model.parameters()).device)])
    return _convolutions_only(graph).eval()


def _atomic_output(path):
    folder = os.path.dirname(os.path.abspath(path)) or '.'
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkdtemp(prefix='.export-', dir=folder)


def export_onnx(model, path):
    """Write the network as ONNX (opset :data:`ONNX_OPSET`, fixed 1 x 1 x S x S input).

    The graph is :func:`inference_graph`. The file is written under a temporary name and
    renamed, so a reader never sees half a file.

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN` (on any device).
    :param path: the ``.onnx`` file to write.
    :returns: ``path``.
    """
    cpu_model = inference_graph(model).cpu().float()
    size = cpu_model.config.input_size
    example = torch.zeros(1, 1, size, size)
    tmp_dir = _atomic_output(path)
    try:
        tmp = os.path.join(tmp_dir, 'model.onnx')
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.13 calls the TorchScript exporter legacy; it is the one that needs no
            # onnxscript and gives opset 17
            warnings.simplefilter('ignore', DeprecationWarning)
            torch.onnx.export(cpu_model, (example,), tmp, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              do_constant_folding=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def _import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise ModelError("backend 'openvino' needs the openvino package "
                         '(pip install openvino)') from exc
    return openvino


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError("backend 'onnxruntime' needs the onnxruntime package "
                         '(pip install onnxruntime)') from exc
    return onnxruntime


def export_openvino(onnx_path, xml_path, compress_to_fp16=False):
    """Convert an ONNX export to OpenVINO IR (``.xml`` + ``.bin``), weights kept in fp32
    unless ``compress_to_fp16``.

    :param onnx_path: an ONNX file from :func:`export_onnx`.
    :param xml_path: the ``.xml`` file to write; the ``.bin`` goes beside it.
    :returns: ``xml_path``.
    """
    ov = _import_openvino()
    ir = ov.convert_model(onnx_path)
    tmp_dir = _atomic_output(xml_path)
    try:
        tmp_xml = os.path.join(tmp_dir, 'model.xml')
        ov.save_model(ir, tmp_xml, compress_to_fp16=bool(compress_to_fp16))
        bin_path = os.path.splitext(xml_path)[0] + '.bin'
        # the .bin first: a reader that finds the .xml finds its weights
        os.replace(os.path.join(tmp_dir, 'model.bin'), bin_path)
        os.replace(tmp_xml, xml_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return xml_path


def _cache_folder(model, cache_dir=None):
    key = model_digest(model)[:24]
    folder = os.path.join(cache_dir or cache_root(), key)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # a read-only home: the exports go to the temporary folder instead
        user = getattr(os, 'getuid', lambda: 0)()
        folder = os.path.join(tempfile.gettempdir(), f'grasp_fcn-{user}', key)
        os.makedirs(folder, exist_ok=True)
    return folder


def cached_int8(model, inputs, cache_dir=None):
    """Path of the network quantised to int8 with ``inputs`` as calibration (OpenVINO IR),
    quantising it into the cache when missing (see :mod:`~grasp_fcn_ros.core.quantize`).

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`.
    :param inputs: calibration inputs (:func:`~grasp_fcn_ros.core.quantize.calibration_inputs`).
    :returns: the int8 ``.xml`` path.
    """
    from .quantize import inputs_digest, quantize_openvino

    fp32_xml = cached_export(model, 'openvino', cache_dir)
    folder = os.path.dirname(fp32_xml)
    xml_path = os.path.join(folder, f'grasp_fcn_int8_{inputs_digest(inputs)[:16]}.xml')
    if os.path.isfile(xml_path) and os.path.isfile(xml_path[:-4] + '.bin'):
        return xml_path
    tmp_dir = _atomic_output(xml_path)
    try:
        tmp_xml = quantize_openvino(fp32_xml, inputs, os.path.join(tmp_dir, 'model.xml'))
        os.replace(os.path.join(tmp_dir, 'model.bin'), xml_path[:-4] + '.bin')
        os.replace(tmp_xml, xml_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return xml_path


def cached_export(model, fmt, cache_dir=None):
    """Path of the network's export in ``fmt``, exporting it into the cache when missing.

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`.
    :param fmt: one of :data:`FORMATS`.
    :param cache_dir: cache folder (default :func:`cache_root`; the system's temporary folder
        when that cannot be created).
    :returns: the ``.onnx`` or ``.xml`` path.
    """
    if fmt not in FORMATS:
        raise ModelError(f"unknown export format '{fmt}' (expected one of {', '.join(FORMATS)})")
    folder = _cache_folder(model, cache_dir)
    onnx_path = os.path.join(folder, 'grasp_fcn.onnx')
    if not os.path.isfile(onnx_path):
        export_onnx(model, onnx_path)
    if fmt == 'onnx':
        return onnx_path
    xml_path = os.path.join(folder, 'grasp_fcn.xml')
    if not (os.path.isfile(xml_path) and os.path.isfile(xml_path[:-4] + '.bin')):
        export_openvino(onnx_path, xml_path)
    return xml_path


def _calibration_inputs(model, calibration, depth_scale):
    """The int8 calibration inputs of a folder of depth frames or a list of depth images."""
    from .quantize import calibration_frames, calibration_inputs

    if calibration is None:
        raise ModelError("precision 'int8' needs calibration depth frames (a folder)")
    frames = (calibration_frames(calibration, depth_scale)
              if isinstance(calibration, (str, os.PathLike)) else list(calibration))
    return calibration_inputs(frames, model.config.input_size)


#: Precisions :func:`export_model` writes: fp32, or (OpenVINO IR only) fp16 weights or the
#: int8-quantised network.
EXPORT_PRECISIONS = ('fp32', 'fp16', 'int8')


def export_model(model_path, fmt='onnx', output=None, precision='fp32', calibration=None,
                 depth_scale=0.001):
    """Export a checkpoint for a faster runtime (``grasp-fcn export``).

    :param model_path: checkpoint file.
    :param fmt: ``onnx``, ``openvino`` (IR ``.xml`` + ``.bin``) or ``checkpoint`` (our own
        format again, without the optimiser state: the file to ship).
    :param output: file to write (default: beside the checkpoint, ``.onnx``, ``.xml`` or
        ``_fp16.pt``).
    :param precision: ``fp32``; for OpenVINO also ``fp16`` (weights stored in fp16) or ``int8``
        (quantised, see :mod:`~grasp_fcn_ros.core.quantize`); for a checkpoint ``fp16``
        (weights stored in fp16, loaded into the fp32 network).
    :param calibration: for ``int8``: a folder of depth frames, or depth images (metres).
    :param depth_scale: metres per unit of integer depth files in a calibration folder.
    :returns: the path written.
    :raises ModelError: for an unreadable checkpoint, an unknown format or precision, or a
        missing runtime.
    """
    if fmt not in FORMATS:
        raise ModelError(f"unknown export format '{fmt}' (expected one of {', '.join(FORMATS)})")
    if precision not in EXPORT_PRECISIONS or (fmt == 'onnx' and precision != 'fp32') or (
            fmt == 'checkpoint' and precision == 'int8'):
        raise ModelError(f"cannot export format '{fmt}' in precision '{precision}' (ONNX: "
                         "fp32; OpenVINO: fp32, fp16, int8; checkpoint: fp32, fp16)")
    model, meta = load_model(model_path)
    stem = os.path.splitext(model_path)[0]
    if fmt == 'checkpoint':
        path = output or f'{stem}_{precision}.pt'
        if os.path.abspath(path) == os.path.abspath(model_path):
            raise ModelError(f'the exported checkpoint would overwrite its source {path}')
        meta.pop('optimiser', None)
        meta.pop('scaler', None)
        save_checkpoint(path, model, dict(meta, stored_precision=precision),
                        half=precision == 'fp16')
        return path
    if fmt == 'onnx':
        return export_onnx(model, output or stem + '.onnx')
    xml_path = output or stem + ('.xml' if precision == 'fp32' else f'_{precision}.xml')
    if not xml_path.endswith('.xml'):
        raise ModelError(f'an OpenVINO IR output must end in .xml, got {xml_path}')
    if precision == 'int8':
        from .quantize import quantize_openvino

        inputs = _calibration_inputs(model, calibration, depth_scale)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, os.path.join(tmp, 'grasp_fcn.onnx'))
        if precision == 'int8':
            fp32_xml = export_openvino(onnx_path, os.path.join(tmp, 'grasp_fcn.xml'))
            tmp_xml = quantize_openvino(fp32_xml, inputs, os.path.join(tmp, 'int8.xml'))
            os.makedirs(os.path.dirname(os.path.abspath(xml_path)), exist_ok=True)
            shutil.move(tmp_xml[:-4] + '.bin', xml_path[:-4] + '.bin')
            shutil.move(tmp_xml, xml_path)
            return xml_path
        return export_openvino(onnx_path, xml_path, compress_to_fp16=precision == 'fp16')


class _ExportedBackend:
    """What the exported backends share: the interface of
    :class:`~grasp_fcn_ros.core.backends.TorchBackend`, one image per runtime call."""

    name = None

    def __init__(self, model, meta, device, path):
        self.config = model.config
        self.meta = meta or {}
        self.device = device
        self.path = path
        self.input_shape = (1, 1, self.config.input_size, self.config.input_size)

    def predict(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape[1:]:
            expected = ('N',) + self.input_shape[1:]
            raise ValueError(f'{self.name} expects input of shape {expected}, '
                             f'got {batch.shape}')
        if batch.shape[0] == 1:  # the node's case: no second copy of the maps
            return self._run(batch)
        return np.concatenate([self._run(batch[i:i + 1]) for i in range(batch.shape[0])])

    def warmup(self, runs=2):
        """Run the network on a zero input, so that the first real frame is not slow."""
        warm_up(self, runs)

    def _run(self, image):
        raise NotImplementedError


class OnnxRuntimeBackend(_ExportedBackend):
    """ONNX Runtime inference: CPU (or CUDA) execution provider, all graph optimisations.

    :param threads: intra-op threads (default: the cores this process may use).
    """

    name = 'onnxruntime'

    def __init__(self, model, meta=None, device='cpu', cache_dir=None, threads=None,
                 precision='fp32'):
        if precision != 'fp32':
            raise ModelError(f"backend 'onnxruntime' runs fp32 only, not precision "
                             f"'{precision}' (use backend 'openvino' or 'torch')")
        ort = _import_onnxruntime()
        started = time.perf_counter()
        path = cached_export(model, 'onnx', cache_dir)
        super().__init__(model, meta, device, path)
        self.precision = 'fp32'
        self.prepare_s = time.perf_counter() - started
        providers = ['CPUExecutionProvider']
        if device.startswith('cuda'):
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise ModelError("backend 'onnxruntime' on CUDA needs onnxruntime-gpu "
                                 "(this onnxruntime has no CUDAExecutionProvider); "
                                 "use device 'cpu'")
            index = int(device.split(':')[1]) if ':' in device else 0
            providers = [('CUDAExecutionProvider', {'device_id': index}), 'CPUExecutionProvider']
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(threads or cpu_threads())
        options.inter_op_num_threads = 1
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(path, options, providers=providers)

    def _run(self, image):
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: image})[0]


def _cut(model, name):
    """``model`` cut at the first output of its node ``name``: ``(front, back)``, two models
    that compute it in turn, the front's output the back's input."""
    import openvino.opset13 as opset

    ov = _import_openvino()
    cut = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == name)
    back = model.clone()  # a second copy: the cut rewires it
    back_cut = next(op for op in back.get_ordered_ops() if op.get_friendly_name() == name)
    features = opset.parameter(back_cut.output(0).get_partial_shape(),
                               back_cut.output(0).get_element_type(), name='features')
    for target in list(back_cut.output(0).get_target_inputs()):
        target.replace_source_output(features.output(0))
    return (ov.Model([cut.output(0)], model.get_parameters(), f'{model.get_name()}_front'),
            ov.Model(back.get_results(), [features], f'{model.get_name()}_back'))


def split_precision_stages(core, path, output_layer=True):
    """The OpenVINO network at ``path`` cut into the models that compute it in turn, each
    stage's output the next one's input: ``(input layer, rest)``, or with ``output_layer``
    ``(input layer, body, output layer)``.

    The input layer is the first convolution (and its bias), which reads the depth; the output
    layer is the last convolution, which writes the maps (the four heads, fused). OpenVINO
    runs a network's unquantised layers in one inference precision; cut, the ends can run in
    fp32 and the rest in bf16 where the CPU computes it natively. bf16 keeps 8 bits of
    mantissa: written in bf16, a quality near 1 moves in steps of 0.004 and a width in steps of
    0.4 %, as much as the quality's differences between neighbouring pixels near a peak and
    enough to move a borderline grasp across a Jaccard threshold; the input layer's bf16
    arithmetic blurs the depth edges the network finds. The two ends are 2.4 % of the network's
    multiply-adds (0.9 and 1.5 %).

    :param core: an ``openvino.Core``.
    :raises ModelError: when the network has no convolution reading its input.
    """
    from .quantize import leading_convolutions

    model = core.read_model(path)
    names = leading_convolutions(model, 1)
    if len(names) != 1:
        raise ModelError(f'{path}: expected one convolution reading the input, found {names}')
    first = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == names[0])
    targets = list(first.output(0).get_target_inputs())
    if len(targets) == 1 and targets[0].get_node().get_type_name() == 'Add':
        first = targets[0].get_node()  # the bias
    head, rest = _cut(model, first.get_friendly_name())
    if not output_layer:
        return head, rest
    last = [op for op in rest.get_ordered_ops()
            if op.get_type_name() in ('Convolution', 'ConvolutionBackpropData')][-1]
    body, tail = _cut(rest, last.input(0).get_source_output().get_node().get_friendly_name())
    return head, body, tail


class OpenVINOBackend(_ExportedBackend):
    """OpenVINO inference on the CPU: compiled once, LATENCY hint, one stream.

    :param threads: inference threads (default: the cores this process may use).
    :param precision: ``fp32`` (default; matches PyTorch), ``bf16`` / ``fp16`` (OpenVINO's
        inference precision: fast where the CPU computes them natively), or ``int8`` (the
        network quantised with NNCF, see :mod:`~grasp_fcn_ros.core.quantize`). Where the CPU
        computes bf16 natively, bf16 runs the input and output layers in fp32 and int8 its
        input layer in fp32, the other unquantised layers in bf16
        (:func:`split_precision_stages`).
    :param hint: OpenVINO performance hint, ``LATENCY`` or ``THROUGHPUT``.
    :param calibration: for ``int8``: a folder of depth frames, or a list of depth images
        (metres), to calibrate the quantisation with.
    :param depth_scale: metres per unit of integer depth files in a calibration folder.

    ``prepare_s`` is the time the export (and quantisation) took, ``cached`` whether the
    network came from the cache.
    """

    name = 'openvino'

    def __init__(self, model, meta=None, device='cpu', cache_dir=None, threads=None,
                 precision='fp32', hint='LATENCY', calibration=None, depth_scale=0.001):
        if device != 'cpu':
            raise ModelError(f"backend 'openvino' runs on the CPU only, not '{device}'")
        if precision not in OPENVINO_PRECISIONS:
            raise ModelError(f"unknown OpenVINO precision '{precision}' "
                             f"(expected one of {', '.join(OPENVINO_PRECISIONS)})")
        ov = _import_openvino()
        started = time.perf_counter()
        self.cached = os.path.isfile(os.path.join(_cache_folder(model, cache_dir),
                                                  'grasp_fcn.xml'))
        if precision == 'int8':
            path = self._int8_path(model, cache_dir, calibration, depth_scale)
        else:
            path = cached_export(model, 'openvino', cache_dir)
        super().__init__(model, meta, device, path)
        self.prepare_s = time.perf_counter() - started
        self.threads = int(threads or cpu_threads())
        self.precision = {'f32': 'fp32', 'f16': 'fp16'}.get(precision, precision)
        core = ov.Core()
        properties = {'PERFORMANCE_HINT': str(hint).upper(), 'NUM_STREAMS': '1',
                      'INFERENCE_NUM_THREADS': str(self.threads)}
        if precision == 'bf16' and native_bf16():
            # the input and output layers in fp32, the rest in bf16 (split_precision_stages)
            stages = zip(split_precision_stages(core, path), ('f32', 'bf16', 'f32'))
        elif precision == 'int8' and native_bf16():
            # the input layer in fp32, the unquantised rest in bf16: all in fp32, they took a
            # third of the network's time; the output layer in fp32 as well changed no map
            # beyond the int8 steps and took 1.3 ms more (AMD Zen 4)
            stages = zip(split_precision_stages(core, path, output_layer=False), ('f32', 'bf16'))
        else:
            stages = [(core.read_model(path), OPENVINO_PRECISIONS[precision])]
        self.requests = [
            core.compile_model(stage, 'CPU', dict(properties, INFERENCE_PRECISION_HINT=inference))
            .create_infer_request() for stage, inference in stages]

    def _int8_path(self, model, cache_dir, calibration, depth_scale):
        from .quantize import inputs_digest

        inputs = _calibration_inputs(model, calibration, depth_scale)
        folder = _cache_folder(model, cache_dir)
        name = f'grasp_fcn_int8_{inputs_digest(inputs)[:16]}.xml'
        self.cached = os.path.isfile(os.path.join(folder, name))
        return cached_int8(model, inputs, cache_dir)

    def _run(self, image):
        for request in self.requests:
            request.infer({0: image})
            image = request.get_output_tensor(0)
        return np.array(image.data, dtype=np.float32, copy=True)


_EXPORTED = {'onnxruntime': OnnxRuntimeBackend, 'openvino': OpenVINOBackend}


def exported_device(backend, device):
    """The device an exported backend runs on for a device parameter.

    ``auto`` means the CPU for OpenVINO, and CUDA for ONNX Runtime only when both torch and
    onnxruntime can use it.

    :raises ModelError: for a device the backend cannot use.
    """

    requested = str(device).strip().lower()
    if backend == 'openvino':
        if requested in ('auto', 'cpu'):
            return 'cpu'
        resolve_device(requested)  # an unknown name gets the usual message
        raise ModelError(f"backend 'openvino' runs on the CPU only (device '{device}'); "
                         "use device 'cpu' or a torch backend")
    resolved = resolve_device(requested)
    if requested == 'auto' and resolved.startswith('cuda'):
        ort = _import_onnxruntime()
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            return 'cpu'
    return resolved


def create_exported_backend(model, meta, backend, device, precision='fp32', **options):
    """Build an exported-runtime backend with the interface of ``TorchBackend``.

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`.
    :param meta: checkpoint metadata.
    :param backend: ``onnxruntime`` or ``openvino``.
    :param device: resolved device name (see :func:`exported_device`).
    :param precision: ``fp32``; OpenVINO also ``bf16``, ``fp16``, ``int8``.
    :param options: backend options (``cache_dir``, ``threads``; OpenVINO ``hint``,
        ``calibration``, ``depth_scale``).
    :raises ModelError: for an unknown backend, a missing runtime or an unusable device.
    """
    if backend not in _EXPORTED:
        raise ModelError(f"unknown exported backend '{backend}' "
                         f"(expected one of {', '.join(_EXPORTED)})")

    check_options(_EXPORTED[backend], backend, options)
    return _EXPORTED[backend](model, meta, device, precision=precision, **options)
