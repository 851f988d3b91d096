"""Inference backends: run the network on a normalised depth batch, numpy in, numpy out.

Every backend has ``name``, ``device``, ``config`` (the :class:`ModelConfig`), ``meta`` and
``predict(batch)`` taking float32 (N, 1, S, S) and returning float32 (N, 4, S, S).
"""

import numpy as np
import torch

from .model import load_model, ModelError

#: Backends this package can build, in the order ``bench`` reports them.
BACKENDS = ('torch', 'torch-channels-last', 'onnxruntime', 'openvino')

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


class TorchBackend:
    """PyTorch inference (eager), optionally channels-last and fp16 autocast on CUDA.

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`.
    :param device: torch device name (already resolved).
    :param channels_last: use the channels-last memory format (faster convolutions on CPU).
    :param meta: checkpoint metadata.
    """

    def __init__(self, model, device='cpu', channels_last=False, half=False, meta=None):
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.half = bool(half) and self.device.type == 'cuda'
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device).eval().to(memory_format=self.memory_format)
        self.config = model.config
        self.meta = meta or {}
        self.name = 'torch-channels-last' if channels_last else 'torch'

    @torch.inference_mode()
    def predict(self, batch):
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if self.half:
            with torch.autocast('cuda', dtype=torch.float16):
                y = self.model(x)
        else:
            y = self.model(x)
        return y.float().cpu().numpy()


def create_backend(model_path, backend='torch', device='auto', **options):
    """Load a checkpoint and wrap it in the named backend.

    :param model_path: checkpoint file (see :func:`~grasp_fcn_ros.core.model.save_checkpoint`).
    :param backend: one of :data:`BACKENDS`.
    :param device: one of :data:`DEVICES` (``cuda:N`` too).
    :raises ModelError: naming the cause (missing file, corrupt file, unknown backend,
        unavailable device or runtime).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend '{backend}' (expected one of {', '.join(BACKENDS)})")
    torch_device = resolve_device(device)
    model, meta = load_model(model_path)
    if backend in ('torch', 'torch-channels-last'):
        return TorchBackend(model, torch_device, channels_last=backend == 'torch-channels-last',
                            meta=meta, **options)
    from . import export
    return export.create_exported_backend(model, meta, backend, torch_device, **options)
