"""Devices, CPU features and backend options: the checks shared by the backends and the
exporters."""

import functools
import inspect
import platform

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
