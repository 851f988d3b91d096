"""Devices, precisions and backend options: the checks shared by the backends, the exporters
and training."""

import contextlib
import functools
import inspect

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


#: CPU feature flags, as ``/proc/cpuinfo`` names them, of native bfloat16 arithmetic: Intel
#: AMX tiles (Sapphire Rapids and later) and AVX-512 BF16 dot products (Cooper Lake, AMD Zen 4
#: and later). Without one of them bf16 is emulated and slower than fp32.
BF16_CPU_FLAGS = ('amx_bf16', 'avx512_bf16')

#: Arithmetic precisions accepted by :func:`resolve_precision`.
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')

_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


@functools.lru_cache(maxsize=None)
def cpu_flags(path='/proc/cpuinfo'):
    """The feature flags of this machine's CPU as a frozenset of ``/proc/cpuinfo`` names
    (``avx2``, ``avx512f``, ``amx_bf16``, ...), read once.

    The first ``flags`` line is taken (every core of a machine reports the same). Where the file
    is missing or has no such line (not Linux, some sandboxes) the set is empty, so a caller
    treats the CPU as having no optional feature.
    """
    try:
        with open(path) as stream:
            for line in stream:
                key, _, value = line.partition(':')
                if key.strip() == 'flags':
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bf16(flags=None):
    """Whether the CPU computes bfloat16 natively (one of :data:`BF16_CPU_FLAGS`), so that bf16
    autocast makes convolutions faster rather than slower.

    :param flags: feature flags to check (default: :func:`cpu_flags`).
    """
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_CPU_FLAGS)


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
            f"this CPU (none of the flags {', '.join(BF16_CPU_FLAGS)})"
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
                                                             'channels_last'}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ModelError(f"unknown option(s) {', '.join(unknown)} for backend '{backend}' "
                         f"(accepted: {', '.join(sorted(accepted))})")
