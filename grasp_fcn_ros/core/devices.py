"""Devices, CPU features, precisions and backend options: the checks shared by the backends,
the exporters and training, and the backends' warm-up."""

import contextlib
import functools
import inspect
import platform

import numpy as np
import torch

from .model import ModelError

#: Device names accepted by :func:`resolve_device`.
DEVICES = ('auto', 'cpu', 'cuda')


def resolve_device(device):
    """Turn a device parameter into a torch device name.

    ``auto`` takes the first CUDA device when one is available, else the CPU; ``cuda`` (or
    ``cuda:N``) refuses when CUDA is not available rather than silently running on the CPU.

    :raises ModelError: for an unknown name or an unavailable CUDA device.
    """
    device = str(device).strip().lower()
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cpu':
        return 'cpu'
    if device == 'cuda' or device.startswith('cuda:'):
        if not torch.cuda.is_available():
            raise ModelError(f"device '{device}' requested but CUDA is not available "
                             "(use 'auto' to fall back to the CPU)")
        return device
    raise ModelError(f"unknown device '{device}' (expected one of {', '.join(DEVICES)})")


#: CPU flags (as /proc/cpuinfo names them) that run bf16 arithmetic natively.
BF16_FLAGS = ('amx_bf16', 'avx512_bf16')
#: CPU flags of int8 dot-product instructions (VNNI, AMX tiles).
INT8_FLAGS = ('amx_int8', 'avx512_vnni', 'avx_vnni')
#: CPU flags of native fp16 arithmetic.
FP16_FLAGS = ('amx_fp16', 'avx512_fp16')
#: The flags worth naming beside a timing.
NOTABLE_FLAGS = ('avx2', 'avx512f') + BF16_FLAGS + INT8_FLAGS + FP16_FLAGS


@functools.lru_cache(maxsize=None)
def _read_cpuinfo(path):
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open(path) as stream:
            for line in stream:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name' and model in ('', platform.machine()):
                    model = value.strip()
                elif key in ('flags', 'Features') and not flags:
                    flags = frozenset(value.split())
                if flags and model:
                    break
    except OSError:  # not Linux: no flags known, so no reduced precision is chosen
        pass
    return model, flags


def cpu_flags(path='/proc/cpuinfo'):
    """The CPU's feature flags (Linux names, e.g. ``amx_bf16``); empty where unknown."""
    return _read_cpuinfo(path)[1]


def cpu_model(path='/proc/cpuinfo'):
    """The CPU's model name."""
    return _read_cpuinfo(path)[0]


def native_bf16(flags=None):
    """Whether the CPU computes in bf16 natively (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


def native_int8(flags=None):
    """Whether the CPU has int8 dot-product instructions (AMX-INT8, AVX512-VNNI, AVX-VNNI)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in INT8_FLAGS)


def cpu_description(flags=None):
    """``model name (flag, flag, ...)`` with the flags that decide precision and speed."""
    flags = cpu_flags() if flags is None else flags
    notable = [flag for flag in NOTABLE_FLAGS if flag in flags]
    return f"{cpu_model()} ({', '.join(notable) or 'no AVX2'})"


#: Arithmetic precisions accepted by :func:`resolve_precision`.
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')

_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}

def cuda_bf16(device='cuda'):
    """Whether a CUDA device computes bfloat16 natively (compute capability 8.0, Ampere, and
    later); False without CUDA."""
    if not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(torch.device(device))[0] >= 8


def resolve_precision(precision, device):
    """The arithmetic precision to use on a (resolved) device.

    ``auto`` takes bf16 on a CPU with native bf16 (:func:`native_bf16`) and on a CUDA device
    with native bf16 (:func:`cuda_bf16`), fp16 on an older CUDA device, fp32 elsewhere. ``bf16``
    where it is not native falls back to fp32, with a note saying so. ``fp16`` needs CUDA: CPUs
    have no fast fp16 arithmetic for training.

    :param precision: one of :data:`PRECISIONS`.
    :param device: a torch device name, e.g. from :func:`resolve_device`.
    :returns: ``(precision, note)``: ``fp32``, ``bf16`` or ``fp16``, and a sentence explaining
        a fallback (None when the request was taken as it is).
    :raises ValueError: for an unknown precision, or fp16 without CUDA.
    """
    precision = str(precision).strip().lower()
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' "
                         f"(expected one of {', '.join(PRECISIONS)})")
    cuda = torch.device(device).type == 'cuda'
    if precision == 'fp16' and not cuda:
        raise ValueError(f"precision fp16 needs a CUDA device, got '{device}': CPUs have no "
                         'fast fp16 arithmetic (use bf16 on a CPU with AMX-BF16 or '
                         'AVX512-BF16, or fp32)')
    native = cuda_bf16(device) if cuda else native_bf16()
    if precision == 'auto':
        if native:
            return 'bf16', None
        return ('fp16' if cuda else 'fp32'), None
    if precision == 'bf16' and not native:
        where = 'this CUDA device' if cuda else \
            f"this CPU (none of the flags {', '.join(BF16_FLAGS)})"
        return 'fp32', f'bf16 is not native on {where}: using fp32'
    return precision, None


def autocast_context(precision, device):
    """The autocast context of a resolved precision on a device: bf16 or fp16 autocast, or a
    null context for fp32."""
    dtype = _AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def check_options(factory, backend, options):
    """Refuse options that a backend's constructor does not take, naming them.

    :raises ModelError: for an unknown option.
    """
    accepted = set(inspect.signature(factory).parameters) - {'self', 'model', 'device', 'meta',
                                                             'channels_last', 'precision'}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ModelError(f"unknown option(s) {', '.join(unknown)} for backend '{backend}' "
                         f"(accepted: {', '.join(sorted(accepted))})")


def warm_up(backend, runs=2):
    """Run a backend on a zero input ``runs`` times (at least once), so that the first real
    frame does not pay the runtime's first-call costs (compilation, memory allocation, a CUDA
    graph's capture).

    :param backend: anything with ``predict`` of float32 (1, 1, S, S) and ``config.input_size``
        S, pixels.
    """
    size = backend.config.input_size
    blank = np.zeros((1, 1, size, size), np.float32)
    for _ in range(max(int(runs), 1)):
        backend.predict(blank)
