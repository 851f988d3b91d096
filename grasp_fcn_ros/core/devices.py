"""Devices and backend options: the checks shared by the backends and the exporters."""

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
