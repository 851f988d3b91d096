"""BatchNorm statistics for training with small batches: recalibration and Batch Renormalization.

With small batches of dissimilar depth images, plain BatchNorm trains on per-batch statistics
that the running averages used at inference do not reproduce, and the trained network scores
far worse in eval mode than in train mode. Batch Renormalization (Ioffe, 2017) corrects the
batch statistics towards the running ones during training, so training sees what inference
sees. It changes training only: the layers keep BatchNorm2d's parameters and buffers, so
checkpoints load into the plain network. The lighter remedy, :func:`recalibrate_batchnorm`,
trains with plain BatchNorm and replaces the running averages (which over-weight the last few
batches) by the average over many training images before each evaluation and checkpoint.

Under distributed training BatchNorm works on the statistics of the whole distributed batch
(:class:`SyncedBatchNorm2d`, and :class:`BatchRenorm2d` likewise), so that N processes with B
images each train as one process with N x B images, and recalibration gives the statistics one
process would.
"""

import itertools

import torch
from torch import distributed as dist
from torch import nn
from torch.optim.swa_utils import update_bn


class _AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over all processes; the gradient is summed the same way (every
    process's output depends on every process's input)."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


def distributed():
    """Whether torch.distributed runs with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def batch_statistics(x):
    """Per-channel mean and (biased) variance of a (N, C, H, W) batch, in float32 (or float64
    for a float64 batch), and the number of values per channel.

    Under distributed training (:func:`distributed`) they are those of the batches of all
    processes together, differentiably: every process must call this in the same order, as
    the layers of a network's forward do. The global mean is the count-weighted mean of the
    local means, and the global variance the count-weighted mean of each local variance plus
    its mean's squared offset from the global mean (the parallel variance formula), so that it
    keeps the precision of a two-pass variance.

    :returns: ``(var, mean, count)``, count a float tensor.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    var, mean = torch.var_mean(x.to(dtype), dim=(0, 2, 3), unbiased=False)
    count = torch.tensor(x.numel() / x.size(1), dtype=dtype, device=x.device)
    if not distributed():
        return var, mean, count
    summed = _AllReduceSum.apply(torch.cat([mean * count, count[None]]))
    count = summed[-1].detach()
    total_mean = summed[:-1] / count
    spread = _AllReduceSum.apply((var + (mean - total_mean) ** 2) * x.numel() / x.size(1))
    return spread / count, total_mean, count


def _update_running_statistics(layer, mean, var, count):
    """The running averages' update of BatchNorm2d in training, from given batch statistics
    (momentum None: a cumulative average, as recalibration sets it)."""
    with torch.no_grad():
        layer.num_batches_tracked += 1
        factor = (1.0 / float(layer.num_batches_tracked) if layer.momentum is None
                  else layer.momentum)
        layer.running_mean.lerp_(mean, factor)
        layer.running_var.lerp_(var * count / (count - 1).clamp(min=1), factor)


def _local_statistics(x, weight, eps):
    """Per-channel mean and biased variance of a batch, reduced in float32 whatever x's type
    (PyTorch's BatchNorm kernels; a bf16 batch is reduced in float32 when the parameters are
    float32)."""
    if x.dtype in (torch.float32, torch.float64):
        return torch.batch_norm_update_stats(x, None, None, 0.0)
    _, mean, invstd = torch.native_batch_norm(x, weight, None, None, None, True, 0.0, eps)
    return mean, (invstd.pow(-2) - eps).clamp(min=0)


class _SyncedBatchNorm(torch.autograd.Function):
    """BatchNorm in training with the statistics of all processes' batches, on PyTorch's fused
    CPU / GPU kernels; the same number of values per process is assumed (equal batches).

    Forward: local mean and variance, two all-reduces of C values for the global ones (the
    parallel variance formula), then the eval-mode kernel with them. Backward: the training
    kernel with the global statistics gives the parameter gradients and an input gradient
    whose gradient means are those of the local batch; one all-reduce of those sums and a
    per-channel affine correction of the input gradient make them global.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        local_mean, local_var = _local_statistics(x, weight, eps)
        n = x.numel() / x.size(1)
        world = dist.get_world_size()
        mean = local_mean.clone()
        dist.all_reduce(mean)
        mean /= world
        var = local_var + (local_mean - mean) ** 2
        dist.all_reduce(var)
        var /= world
        y = torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, False)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.local_count = n
        count = torch.full_like(mean, n * world)
        ctx.mark_non_differentiable(mean, var, count)
        return y, mean, var, count

    @staticmethod
    def backward(ctx, grad, *_):
        x, weight, mean, invstd = ctx.saved_tensors
        grad = grad.contiguous(memory_format=_memory_format(x))
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, None, None, mean, invstd, True, ctx.eps, [True, True, True])
        local = torch.stack([grad_bias, grad_weight]) / ctx.local_count
        total = local.clone()
        dist.all_reduce(total)
        total /= dist.get_world_size()
        # grad_x used the local means of grad and grad * x_hat; add (local - global) means:
        # weight * invstd * (d_bias + (x - mean) * invstd * d_weight), affine in x
        d_bias, d_weight = local - total
        scale = weight * invstd
        slope = (scale * invstd * d_weight).to(grad_x.dtype).view(1, -1, 1, 1)
        offset = (scale * (d_bias - mean * invstd * d_weight)).to(grad_x.dtype)
        grad_x.addcmul_(x, slope).add_(offset.view(1, -1, 1, 1))
        return grad_x, grad_weight, grad_bias, None


def _memory_format(x):
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that normalises with the statistics of the whole distributed batch in
    training (every process must have a batch of the same size); in a single process, and in
    eval mode, plain BatchNorm2d. Parameters and buffers are BatchNorm2d's, so checkpoints
    are unchanged. PyTorch's ``SyncBatchNorm`` does the same on GPUs only.
    """

    def forward(self, x):
        if not self.training or not distributed():
            return super().forward(x)
        y, mean, var, count = _SyncedBatchNorm.apply(x, self.weight, self.bias, self.eps)
        _update_running_statistics(self, mean, var, count)
        return y


class BatchRenorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that trains with Batch Renormalization; plain BatchNorm in eval mode.

    ``r_max`` and ``d_max`` bound the corrections (:func:`set_renorm_limits` relaxes them);
    with ``r_max = 1`` and ``d_max = 0`` it is plain BatchNorm. Under distributed training the
    batch statistics are those of all processes (:func:`batch_statistics`).
    """

    r_max = 1.0
    d_max = 0.0

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        var, mean, count = batch_statistics(x)
        std = torch.sqrt(var + self.eps)
        running_std = torch.sqrt(self.running_var + self.eps)
        r = (std.detach() / running_std).clamp(1.0 / self.r_max, self.r_max)
        d = ((mean.detach() - self.running_mean) / running_std).clamp(-self.d_max, self.d_max)
        _update_running_statistics(self, mean.detach(), var.detach(), count)
        # ((x - mean) / std * r + d) * weight + bias, as one per-channel affine map of x
        scale = self.weight * r / std
        shift = self.bias + self.weight * d - mean * scale
        return (x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).to(x.dtype)


def _switch_batchnorm(model, cls):
    layers = []
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = cls
            layers.append(module)
    return layers


def use_batch_renorm(model):
    """Switch every BatchNorm2d of a model to :class:`BatchRenorm2d` in place; returns them."""
    return _switch_batchnorm(model, BatchRenorm2d)


def use_synced_batchnorm(model):
    """Switch every plain BatchNorm2d of a model to :class:`SyncedBatchNorm2d` in place (for
    distributed training; layers already switched to Batch Renormalization stay as they are);
    returns them."""
    return _switch_batchnorm(model, SyncedBatchNorm2d)


def set_renorm_limits(layers, step, warmup_steps, r_max=3.0, d_max=5.0):
    """Relax the corrections linearly from plain BatchNorm to ``(r_max, d_max)``."""
    t = 1.0 if warmup_steps <= 0 else min(step / warmup_steps, 1.0)
    for layer in layers:
        layer.r_max = 1.0 + t * (r_max - 1.0)
        layer.d_max = t * d_max


@torch.no_grad()
def recalibrate_batchnorm(model, batches):
    """Set every BatchNorm2d's running mean and variance to their average over ``batches``.

    The statistics come from :func:`torch.optim.swa_utils.update_bn` (a cumulative average of
    the per-batch mean and unbiased variance, batch statistics in train mode, no gradients);
    the model is left in train mode and its weights are untouched. The running averages
    otherwise follow the last batches with momentum 0.1, and with small batches they are a
    noisy estimate of what inference meets. Under distributed training with
    :class:`SyncedBatchNorm2d` layers every process calls it with its share of each batch (the
    same number of batches everywhere), and the statistics are those of the whole batches.

    :param batches: iterable of input tensors (B, 1, S, S) already on the model's device.
    :returns: the number of batches seen (0 leaves the statistics as they were).
    """
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return 0
    count = 0

    def counted():
        nonlocal count
        for x in itertools.chain([first], batches):
            count += 1
            yield x

    update_bn(counted(), model)
    model.train()
    return count
