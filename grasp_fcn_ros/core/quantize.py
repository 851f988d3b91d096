"""int8 post-training quantisation of the OpenVINO network, calibrated on real depth frames.

NNCF's post-training quantisation runs the fp32 network on calibration inputs, records the
range of every activation and writes an OpenVINO IR whose convolutions run in int8 (weights
per output channel, activations per tensor). Three choices decide how close the int8 maps come
to fp32's (measured on the 80 Cornell images, README "Precision and accuracy"):

- *Calibration inputs as the camera gives them*: depth frames of a real camera put through the
  detector's own preprocessing (:func:`~.preprocess.prepare_input`), each at a few crop sizes,
  upright and mirrored left to right, **never turned**: an oblique camera's table slopes from
  the bottom of the image to the top, and frames turned by quarter turns put that slope where
  no camera frame has it, widening the recorded activation ranges and so coarsening every
  step (mean |dQ| 0.0135 with turned frames, 0.0054 without).
- *Asymmetric activations* (NNCF's ``MIXED`` preset): the network's convolutions read
  BatchNorm outputs, which are not centred on zero; a symmetric range wastes part of the
  int8 steps on values that never occur (mean |dQ| 0.0048 -> 0.0029).
- *The first two convolutions in fp32*: the first reads the depth itself (mean-subtracted,
  metres); an int8 step over its range is about 1.6 mm on a Cornell frame, as much as the
  height of a flat object and of the edges the network must find (a 40-epoch
  cross-validation model: mean |dQ| 0.0046 -> 0.0014 on 20 Cornell frames with that layer in
  fp32, its best pixel moved by more than 3 px on 90 % of them with the layer in int8, on
  30 % without). The second reads the first's edge responses at full resolution, and its
  int8 input is the largest error left: kept in fp32 as well, another cross-validation
  model's mean |dQ| fell from 0.0072 to 0.0019 and its p99 from 0.17 to 0.020 on the 80
  Cornell frames; keeping any other block in fp32 changed neither by more than 5 %. The two
  are 15 % of the network's multiply-adds. All in fp32 (OpenVINO's one inference precision
  for the unquantised layers of a network) they took a third of the int8 network's time on
  an AMX CPU; all in bf16 the maps came out further from fp32's than with the first alone in
  fp32 (mean |dQ| 0.0035 against 0.0027 on the bundled frames; 0.0014 with both in fp32).
  The loss is the first layer's bf16 arithmetic, not the depth's rounding: fed the depth
  exactly (its bf16 part and the remainder as two input channels of the same weights) the
  bf16 network's maps came no closer (0.0027 / 0.033 mean / p99 on 20 Cornell inputs, as
  with the depth rounded). So where the CPU computes bf16 natively the network is cut after
  its first convolution, which runs in fp32, and the second runs in bf16: the maps of the
  all-fp32 version at about a quarter of its extra time
  (:func:`~grasp_fcn_ros.core.export.split_precision_stages`).
- *Overflow fix on every layer*: weights use 7 of their 8 bits, so that the multiply-adds of
  CPUs without VNNI (AVX2's ``vpmaddubsw``) cannot saturate; the same IR then computes the
  same maps with and without VNNI, at no measured cost in accuracy.

The quantised IR is cached beside the fp32 export, keyed by the digest of the weights, of the
calibration inputs and of these settings (see :func:`~.export.cached_int8`), so a node
quantises on its first start only.
"""

import contextlib
import glob
import hashlib
import logging
import os

import numpy as np

from .depth import DEPTH_FILE_TYPES, read_depth_image
from .geometry import CropTransform
from .model import ModelError
from .preprocess import DEFAULT_MAX_DEPTH_M, DEFAULT_MIN_DEPTH_M, prepare_input

#: Crop sides of the calibration windows, as fractions of each frame's largest centred square
#: (the metric crop takes 83-89 % of a Cornell frame's; nearer cameras take less).
CALIBRATION_CROP_FRACTIONS = (1.0, 0.9, 0.8, 0.7)
#: NNCF settings of the quantisation (part of the cache key: a change re-quantises).
QUANTIZATION_SETTINGS = {'preset': 'mixed', 'overflow_fix': 'enable', 'fp32_convolutions': 2}
#: Most frames read from a calibration folder.
MAX_CALIBRATION_FRAMES = 32


def _import_nncf():
    try:
        import nncf
    except ImportError as exc:
        raise ModelError("precision 'int8' needs the nncf package (pip install nncf)") from exc
    return nncf


def calibration_paths(folder, limit=MAX_CALIBRATION_FRAMES):
    """The depth files of a calibration folder: files named ``*d.<type>`` (the Cornell layout)
    or, when there are none, every depth file, sorted, at most ``limit`` spread over the folder.
    Nothing is read: a quick check of a folder before a model is built with it.

    :raises ModelError: when the folder is missing or holds no depth file.
    """
    if not os.path.isdir(str(folder)):
        raise ModelError(f'int8 calibration folder {folder} does not exist')
    paths = sorted(path for kind in DEPTH_FILE_TYPES
                   for path in glob.glob(os.path.join(folder, f'*d{kind}')))
    if not paths:
        paths = sorted(path for kind in DEPTH_FILE_TYPES
                       for path in glob.glob(os.path.join(folder, f'*{kind}')))
    if not paths:
        raise ModelError(f'no depth frames to calibrate int8 with in {folder} (expected '
                         f"files ending in {', '.join(DEPTH_FILE_TYPES)})")
    if len(paths) > limit:  # spread over the folder, not its first files
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths


def calibration_frames(folder, depth_scale=0.001, limit=MAX_CALIBRATION_FRAMES):
    """Depth frames (metres) of a calibration folder (see :func:`calibration_paths`).

    :raises ModelError: when the folder is missing or holds no depth file.
    """
    return [read_depth_image(path, depth_scale) for path in calibration_paths(folder, limit)]


def calibration_inputs(frames_m, input_size, min_depth_m=DEFAULT_MIN_DEPTH_M,
                       max_depth_m=DEFAULT_MAX_DEPTH_M):
    """Network inputs (float32 (1, 1, S, S) each) for calibration, from depth frames.

    Each frame gives a window per :data:`CALIBRATION_CROP_FRACTIONS`, prepared as the detector
    prepares it, upright and mirrored left to right (not turned: see the module's notes).

    :param frames_m: depth images (H, W), metres.
    :param input_size: the network's input side S, pixels.
    """
    inputs = []
    for depth_m in frames_m:
        height, width = depth_m.shape
        for fraction in CALIBRATION_CROP_FRACTIONS:
            side = max(int(round(min(height, width) * fraction)), 1)
            transform = CropTransform.centred(width, height, side, input_size)
            net_input = prepare_input(depth_m, transform, min_depth_m, max_depth_m)
            for view in (net_input, net_input[:, ::-1]):
                inputs.append(np.ascontiguousarray(view[None, None], dtype=np.float32))
    if not inputs:
        raise ModelError('int8 calibration needs at least one depth frame')
    return inputs


def inputs_digest(inputs):
    """SHA-256 (hex) of calibration inputs and :data:`QUANTIZATION_SETTINGS`: part of the cache
    key of a quantised network."""
    digest = hashlib.sha256(repr(sorted(QUANTIZATION_SETTINGS.items())).encode())
    for array in inputs:
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


def leading_convolutions(model, count=1):
    """Names of the first ``count`` convolutions along an OpenVINO model's paths from its
    input: those that read the input through no other convolution, then those that read
    them, and so on.
    """
    conv_types = ('Convolution', 'ConvolutionBackpropData')
    names, frontier = [], [op for op in model.get_ordered_ops()
                           if op.get_type_name() == 'Parameter']
    for _ in range(count):
        found, seen, stack = [], set(), list(frontier)
        while stack:
            node = stack.pop()
            for output in node.outputs():
                for target in output.get_target_inputs():
                    op = target.get_node()
                    name = op.get_friendly_name()
                    if name in seen:
                        continue
                    seen.add(name)
                    if op.get_type_name() in conv_types:
                        found.append(op)
                    else:
                        stack.append(op)
        names += [op.get_friendly_name() for op in found]
        frontier = found
    return list(dict.fromkeys(names))  # a convolution on two paths once


@contextlib.contextmanager
def _log_level(name, level):
    """Raise the level of the logger ``name`` while the block runs, then put it back."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def quantize_openvino(xml_path, inputs, output_xml):
    """Quantise an fp32 OpenVINO IR to int8 with NNCF, calibrated on ``inputs``.

    :param xml_path: the fp32 IR.
    :param inputs: calibration inputs, see :func:`calibration_inputs`.
    :param output_xml: the int8 IR to write (its ``.bin`` beside it).
    :returns: ``output_xml``.

    NNCF's information lines (one per kept layer, the algorithms it runs) are held back: a
    node's log gets the quantisation's time from the caller, and NNCF's warnings and errors.
    """
    nncf = _import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    import openvino as ov

    model = ov.Core().read_model(xml_path)
    kept = leading_convolutions(model, QUANTIZATION_SETTINGS['fp32_convolutions'])
    with _log_level('nncf', logging.WARNING):
        quantized = nncf.quantize(
            model, nncf.Dataset(list(inputs)), subset_size=len(inputs),
            preset=nncf.QuantizationPreset(QUANTIZATION_SETTINGS['preset']),
            ignored_scope=nncf.IgnoredScope(names=kept) if kept else None,
            advanced_parameters=AdvancedQuantizationParameters(
                overflow_fix=OverflowFix(QUANTIZATION_SETTINGS['overflow_fix'])))
    ov.save_model(quantized, output_xml, compress_to_fp16=False)
    return output_xml
