"""Inference backends: run the network on a normalised depth batch, numpy in, numpy out.

Every backend has ``name``, ``device``, ``config`` (the :class:`ModelConfig`), ``meta`` and
``predict(batch)`` taking float32 (N, 1, S, S) and returning float32 (N, 4, S, S).
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .devices import check_options, warm_up
from .model import load_model, ModelError
from .runtime import BACKENDS, choose_runtime, RuntimeChoice  # noqa: F401 (re-exported)

#: PyTorch's own number of CPU threads in this process before any backend changed it.
TORCH_DEFAULT_THREADS = torch.get_num_threads()

#: Precisions of :class:`TorchBackend` (reduced ones through autocast).
PRECISIONS = ('fp32', 'fp16', 'bf16')
_AUTOCAST_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


@dataclass(frozen=True)
class TorchPlan:
    """What :class:`TorchBackend` actually does on a device, its options applied.

    CUDA-only options are switched off on the CPU, so every option is safe to set everywhere.

    :param precision: ``fp32``, or ``fp16`` / ``bf16`` autocast (on the CPU too: bf16 is fast
        where the CPU computes it natively, see :mod:`~grasp_fcn_ros.core.runtime`).
    :param cuda_graphs: replay a captured CUDA graph of the fixed-shape forward (CUDA only,
        not with ``compile``, which captures its own graphs).
    :param compile_mode: ``torch.compile`` mode, or None for eager (``reduce-overhead`` on
        CUDA, ``default`` on the CPU).
    :param pinned: stage uploads and downloads in page-locked host buffers (CUDA only).
    """

    precision: str = 'fp32'
    cuda_graphs: bool = False
    compile_mode: str = None
    pinned: bool = False

    @classmethod
    def for_device(cls, device_type, precision='fp32', cuda_graphs=False, compile=False,
                   pinned=True):
        """The plan for a device type (``cpu`` or ``cuda``) and the requested options.

        :raises ModelError: for an unknown precision.
        """
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision '{precision}' "
                             f"(expected one of {', '.join(PRECISIONS)})")
        cuda = device_type == 'cuda'
        mode = None
        if compile:
            mode = 'reduce-overhead' if cuda else 'default'
        return cls(precision=precision,
                   cuda_graphs=bool(cuda_graphs) and cuda and not compile,
                   compile_mode=mode, pinned=bool(pinned) and cuda)

    @property
    def autocast_dtype(self):
        """The autocast dtype, or None for fp32."""
        return _AUTOCAST_DTYPES.get(self.precision)


class Fp32(nn.Module):
    """A module that runs in fp32 inside an autocast region (its input cast to fp32)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


def fp32_ends(model):
    """A copy of the network whose input layer (the first convolution, which reads the depth)
    and output layers (the heads, which write the maps) run in fp32 under autocast.

    fp16 and bf16 round the maps as they are written (bf16: a quality near 1 in steps of 0.004,
    a width in steps of 0.4 %) and the first layer's depth edges; the two ends are 2.4 % of
    the network's multiply-adds (see :func:`~.export.split_precision_stages`, the same cut for
    OpenVINO).

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`, or its
        :func:`~.export.inference_graph`.
    """
    graph = copy.deepcopy(model)
    graph.encoder[0][0] = Fp32(graph.encoder[0][0])
    graph.heads = nn.ModuleList(Fp32(head) for head in graph.heads)
    return graph


class TorchBackend:
    """PyTorch inference: eager or compiled, optionally channels-last, optionally fp16/bf16
    autocast (the input and output layers in fp32, see :func:`fp32_ends`); on CUDA optionally
    CUDA graphs and pinned transfers (see :class:`TorchPlan`).

    :param model: a :class:`~grasp_fcn_ros.core.model.GraspFCN`.
    :param device: torch device name (already resolved, see :func:`resolve_device`).
    :param channels_last: use the channels-last memory format (faster convolutions on CPU).
    :param meta: checkpoint metadata.
    :param precision: one of :data:`PRECISIONS`.
    :param cuda_graphs: capture the forward once and replay it (CUDA only).
    :param compile: wrap the network in ``torch.compile`` (the first frames take long).
    :param pinned: page-locked host buffers for transfers (CUDA only).
    :param fuse_heads: run :func:`~grasp_fcn_ros.core.export.inference_graph` (the four heads
        merged into one convolution, transposed convolutions as convolutions, as the exported
        backends do) instead of the network as trained.
    :param half: same as ``precision='fp16'``.
    :param threads: on the CPU, the threads of PyTorch's operators (``torch.set_num_threads``,
        which holds for the whole process); 0 = :data:`TORCH_DEFAULT_THREADS`, None = leave
        them as they are.
    """

    def __init__(self, model, device='cpu', channels_last=False, meta=None, precision='fp32',
                 cuda_graphs=False, compile=False, pinned=True, fuse_heads=False, half=False,
                 threads=None):
        self.device = torch.device(device)
        self.config = model.config
        self.threads = None
        if self.device.type == 'cpu':
            if threads is not None:
                torch.set_num_threads(int(threads) or TORCH_DEFAULT_THREADS)
            self.threads = torch.get_num_threads()
        if fuse_heads:
            from .export import inference_graph
            model = inference_graph(model)
        if half and precision == 'fp32':
            precision = 'fp16'
        self.plan = TorchPlan.for_device(self.device.type, precision, cuda_graphs, compile,
                                         pinned)
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device).eval().to(memory_format=self.memory_format)
        self.meta = meta or {}
        self.name = 'torch-channels-last' if channels_last else 'torch'
        self.precision = self.plan.precision
        self._network = self.model
        if self.plan.autocast_dtype is not None:
            self._network = fp32_ends(self.model)
        if self.plan.compile_mode:
            self._network = torch.compile(self._network, mode=self.plan.compile_mode)
        self._graph = None
        self._static_in = self._static_out = None
        self._host_in = self._host_out = None

    @property
    def half(self):
        """Whether the forward runs in fp16."""
        return self.plan.precision == 'fp16'

    def _forward(self, x):
        dtype = self.plan.autocast_dtype
        if dtype is None:
            return self._network(x)
        # no weight-cast cache: it would hold tensors from outside a captured graph
        with torch.autocast(self.device.type, dtype=dtype, cache_enabled=False):
            return self._network(x)

    def _capture(self, shape):
        """Capture the forward for one input shape as a CUDA graph (after warm-up runs on a
        side stream, as ``torch.cuda.graphs`` requires)."""
        static_in = torch.zeros(shape, device=self.device).contiguous(
            memory_format=self.memory_format)
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        self._graph, self._static_in, self._static_out = graph, static_in, static_out

    def _upload(self, batch):
        x = torch.from_numpy(batch)
        if self.plan.pinned:
            if self._host_in is None or self._host_in.shape != x.shape:
                self._host_in = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
            self._host_in.copy_(x)
            x = self._host_in
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def _download(self, y):
        y = y.float()
        if not self.plan.pinned:
            return y.cpu().numpy()
        if self._host_out is None or self._host_out.shape != y.shape:
            self._host_out = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
        self._host_out.copy_(y, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return self._host_out.numpy().copy()

    def predict(self, batch):
        """Run the network.

        :param batch: float32 (N, 1, S, S) normalised depth.
        :returns: float32 (N, 4, S, S) maps.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.device.type != 'cuda':
            return self._predict(batch)
        with torch.cuda.device(self.device):  # streams and graphs of this device, not device 0
            return self._predict(batch)

    def warmup(self, runs=2):
        """Run the network on a zero input (first-call costs: CUDA graph capture, compilation,
        memory allocation), so that the first real frame is not slow."""
        warm_up(self, runs)

    @torch.inference_mode()
    def _predict(self, batch):
        x = self._upload(batch)
        if self.plan.cuda_graphs:
            if self._graph is None or self._static_in.shape != x.shape:
                self._capture(x.shape)
            self._static_in.copy_(x)
            self._graph.replay()
            y = self._static_out
        else:
            y = self._forward(x)
        return self._download(y)


def create_backend(model_path, backend='torch', device='auto', precision='fp32', **options):
    """Load a checkpoint and wrap it in the named backend.

    :param model_path: checkpoint file (see :func:`~grasp_fcn_ros.core.model.save_checkpoint`).
    :param backend: one of :data:`~grasp_fcn_ros.core.runtime.BACKEND_CHOICES` (``auto``: see
        :mod:`~grasp_fcn_ros.core.runtime`).
    :param device: one of :data:`DEVICES` (``cuda:N`` too).
    :param precision: one of :data:`~grasp_fcn_ros.core.runtime.PRECISION_CHOICES`.
    :param options: backend options: :class:`TorchBackend`'s (``cuda_graphs``, ``compile``,
        ``pinned``), or those of :func:`~grasp_fcn_ros.core.export.create_exported_backend`
        (``threads``, ``cache_dir``, ``calibration`` for int8, ...).
    :returns: the backend; its ``choice`` (a :class:`RuntimeChoice`) says what was chosen and
        why.
    :raises ModelError: naming the cause (missing file, corrupt file, unknown backend or
        precision, unavailable device or runtime).
    """
    choice = choose_runtime(backend, precision, device)
    if choice.backend in ('torch', 'torch-channels-last'):
        check_options(TorchBackend, choice.backend, options)
        model, meta = load_model(model_path)
        if choice.device.startswith('cuda') and backend == 'auto':
            options.setdefault('cuda_graphs', True)
        result = TorchBackend(model, choice.device, meta=meta,
                              channels_last=choice.backend == 'torch-channels-last',
                              precision=choice.precision, **options)
    else:
        from . import export
        model, meta = load_model(model_path)
        result = export.create_exported_backend(model, meta, choice.backend, choice.device,
                                                precision=choice.precision, **options)
    result.choice = choice
    return result
