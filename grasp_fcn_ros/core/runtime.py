"""Which backend and precision run the network: ``backend: auto`` and ``precision: auto``.

The choice depends on the machine (a CUDA device, the CPU's feature flags, whether OpenVINO is
installed) and on what this package has verified for accuracy (:data:`VERIFIED`):

* a CUDA device: PyTorch on the GPU, fp16 autocast with a captured CUDA graph;
* a CPU, OpenVINO installed: OpenVINO; int8 (post-training quantisation calibrated on real
  depth frames, see :mod:`~.quantize`) where NNCF is installed and the CPU has int8 dot
  products (VNNI, AMX); else bf16 where the CPU computes bf16 natively (AVX512-BF16); else int8
  through AVX2 (NNCF installed); else fp32;
* a CPU without OpenVINO: channels-last PyTorch, bf16 autocast where the CPU computes bf16
  natively, else fp32.

An explicit precision the machine cannot run natively falls back to fp32, and the choice says
so; a precision the backend cannot run at all is refused.
"""

from dataclasses import dataclass
import importlib.util

import torch

from .devices import cpu_description, cpu_flags, native_bf16, native_int8, resolve_device
from .model import ModelError

#: Backends this package can build (``auto`` chooses among them).
BACKENDS = ('torch', 'torch-channels-last', 'onnxruntime', 'openvino')
#: Values of the ``backend`` parameter.
BACKEND_CHOICES = ('auto',) + BACKENDS
#: Numeric precisions of the network's forward pass.
PRECISIONS = ('fp32', 'bf16', 'fp16', 'int8')
#: Values of the ``precision`` parameter.
PRECISION_CHOICES = ('auto',) + PRECISIONS

#: What each backend can run, by device type.
SUPPORTED = {
    ('torch', 'cpu'): ('fp32', 'bf16', 'fp16'),
    ('torch', 'cuda'): ('fp32', 'bf16', 'fp16'),
    ('onnxruntime', 'cpu'): ('fp32',),
    ('onnxruntime', 'cuda'): ('fp32',),
    ('openvino', 'cpu'): ('fp32', 'bf16', 'fp16', 'int8'),
}

#: (backend, precision) pairs whose accuracy on the Cornell images was measured to match fp32
#: PyTorch (README, "Precision and accuracy"); ``auto`` chooses only among these. fp16 carries
#: more mantissa than the verified bf16 on the same network, so it is counted with it. int8 is
#: OpenVINO's network quantised as :mod:`~.quantize` quantises it (upright calibration frames,
#: asymmetric activations, the input layer in fp32); quantised otherwise it is not verified.
VERIFIED = frozenset({
    ('torch', 'fp32'), ('openvino', 'fp32'), ('onnxruntime', 'fp32'),
    ('openvino', 'bf16'), ('torch', 'bf16'), ('torch', 'fp16'), ('openvino', 'int8'),
})


@dataclass(frozen=True)
class RuntimeChoice:
    """A backend, device and precision to run the network with, and why.

    :param backend: one of :data:`BACKENDS`.
    :param device: resolved torch device name (``cpu``, ``cuda``, ``cuda:N``).
    :param precision: one of :data:`PRECISIONS`.
    :param reason: one line saying why (machine features, fallbacks).
    """

    backend: str
    device: str
    precision: str
    reason: str

    def describe(self):
        return f'{self.backend} {self.precision} on {self.device}: {self.reason}'


#: The module each exported backend runs on.
_RUNTIME_MODULES = {'onnxruntime': 'onnxruntime', 'openvino': 'openvino'}


def runtime_installed(backend):
    """Whether the runtime an exported backend needs (ONNX Runtime, OpenVINO) imports here;
    True for the PyTorch backends, which need nothing more."""
    module = _RUNTIME_MODULES.get(_family(str(backend).partition(':')[0]))
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def nncf_installed():
    """Whether NNCF, which quantises the network to int8, is installed (nothing is imported)."""
    return importlib.util.find_spec('nncf') is not None


def _int8_reason(flags):
    """Why int8 is fast on a CPU with these flags, or None where it is not worth running."""
    if native_int8(flags):
        return 'int8 dot products (VNNI/AMX)'
    if 'avx2' in flags:
        return 'int8 multiply-adds (AVX2, no VNNI)'
    return None


def _family(backend):
    return 'torch' if backend.startswith('torch') else backend


def choose_backend(backend, device, openvino_available=None):
    """Resolve ``backend``/``device`` parameters into ``(backend, device, reason)``.

    :raises ModelError: for an unknown backend or an unusable device.
    """
    backend = str(backend).strip().lower()
    if backend not in BACKEND_CHOICES:
        raise ModelError(f"unknown backend '{backend}' "
                         f"(expected one of {', '.join(BACKEND_CHOICES)})")
    if backend in ('openvino', 'onnxruntime'):
        from .export import exported_device
        return backend, exported_device(backend, device), 'requested'
    if backend != 'auto':
        return backend, resolve_device(device), 'requested'
    resolved = resolve_device(device)
    if resolved.startswith('cuda'):
        return 'torch', resolved, 'CUDA device'
    if openvino_available is None:
        openvino_available = runtime_installed('openvino')
    if openvino_available:
        return 'openvino', 'cpu', 'CPU, OpenVINO installed'
    return 'torch-channels-last', 'cpu', 'CPU, OpenVINO not installed'


def choose_precision(backend, device, precision='auto', flags=None, nncf_available=None):
    """Resolve a ``precision`` parameter for a resolved backend and device:
    ``(precision, reason)``.

    ``auto`` on a CPU takes int8 where the backend runs it, NNCF is installed to quantise it
    and the CPU has int8 dot products (VNNI, AMX); else bf16 where it is native; else int8
    through AVX2's multiply-adds (same conditions); else fp32.

    :param flags: CPU feature flags (default: this machine's, :func:`~.devices.cpu_flags`).
    :param nncf_available: whether NNCF is installed (default: look).
    :raises ModelError: for an unknown precision, or one the backend cannot run.
    """
    precision = str(precision).strip().lower()
    if precision not in PRECISION_CHOICES:
        raise ModelError(f"unknown precision '{precision}' "
                         f"(expected one of {', '.join(PRECISION_CHOICES)})")
    device_type = 'cuda' if device.startswith('cuda') else 'cpu'
    family = _family(backend)
    supported = SUPPORTED.get((family, device_type), ('fp32',))
    flags = cpu_flags() if flags is None else flags
    if precision == 'auto':
        if device_type == 'cuda':
            wanted = [('fp16', 'CUDA')]
        else:
            int8, missing = _int8_reason(flags), ''
            if int8 and 'int8' in supported:
                if nncf_available is None:
                    nncf_available = nncf_installed()
                if not nncf_available:
                    int8, missing = None, ' (int8 needs NNCF: pip install nncf)'
            bf16 = 'native bf16 (AMX/AVX512-BF16)' if native_bf16(flags) else None
            # int8 dot products outrun bf16 (AMX: network 18 against 28 ms); bf16 outruns
            # int8 through AVX2's multiply-adds, where a CPU has both
            ranked = ([('int8', int8), ('bf16', bf16)] if native_int8(flags)
                      else [('bf16', bf16), ('int8', int8)])
            wanted = [(name, why) for name, why in ranked if why]
        for name, why in wanted:
            if name in supported and (family, name) in VERIFIED:
                return name, why
        return 'fp32', ('no faster verified precision for this backend and CPU' + missing
                        if device_type == 'cpu' else 'fp32 on this backend')
    if precision not in supported:
        raise ModelError(f"backend '{backend}' cannot run precision '{precision}' on "
                         f"{device_type} (it runs {', '.join(supported)})")
    if device_type == 'cpu' and precision == 'bf16' and not native_bf16(flags):
        return 'fp32', 'bf16 requested, but this CPU has no native bf16 (AMX/AVX512-BF16): fp32'
    return precision, 'requested'


def choose_runtime(backend='auto', precision='auto', device='auto', flags=None,
                   openvino_available=None, nncf_available=None):
    """The backend, device and precision for these parameters on this machine.

    :returns: a :class:`RuntimeChoice`.
    :raises ModelError: for unknown values or a combination that cannot run.
    """
    backend, device, backend_reason = choose_backend(backend, device, openvino_available)
    precision, precision_reason = choose_precision(backend, device, precision, flags,
                                                   nncf_available)
    where = cpu_description(flags) if device == 'cpu' else _cuda_name(device)
    return RuntimeChoice(backend, device, precision,
                         f'backend {backend_reason}; precision {precision_reason}; {where}')


def _cuda_name(device):
    try:
        return torch.cuda.get_device_name(torch.device(device))
    except (RuntimeError, AssertionError, ValueError):
        return device
