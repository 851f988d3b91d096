"""BatchNorm statistics for training with small batches: recalibration and Batch Renormalization.

With small batches of dissimilar depth images, plain BatchNorm trains on per-batch statistics
that the running averages used at inference do not reproduce, and the trained network scores
far worse in eval mode than in train mode. Batch Renormalization (Ioffe, 2017) corrects the
batch statistics towards the running ones during training, so training sees what inference
sees. It changes training only: the layers keep BatchNorm2d's parameters and buffers, so
checkpoints load into the plain network. The lighter remedy, :func:`recalibrate_batchnorm`,
trains with plain BatchNorm and replaces the running averages (which over-weight the last few
batches) by the average over many training images before each evaluation and checkpoint.
"""

import itertools

import torch
from torch import nn
from torch.optim.swa_utils import update_bn


class BatchRenorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that trains with Batch Renormalization; plain BatchNorm in eval mode.

    ``r_max`` and ``d_max`` bound the corrections; with ``r_max = 1`` and ``d_max = 0`` it is
    plain BatchNorm.
    """

    r_max = 1.0
    d_max = 0.0

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
        std = torch.sqrt(var + self.eps)
        running_std = torch.sqrt(self.running_var + self.eps)
        r = (std.detach() / running_std).clamp(1.0 / self.r_max, self.r_max)
        d = ((mean.detach() - self.running_mean) / running_std).clamp(-self.d_max, self.d_max)
        with torch.no_grad():
            n = x.numel() / x.size(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / max(n - 1, 1), self.momentum)
            self.num_batches_tracked += 1
        # ((x - mean) / std * r + d) * weight + bias, as one per-channel affine map of x
        scale = self.weight * r / std
        shift = self.bias + self.weight * d - mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def use_batch_renorm(model):
    """Switch every BatchNorm2d of a model to :class:`BatchRenorm2d` in place; returns them."""
    layers = []
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = BatchRenorm2d
            layers.append(module)
    return layers


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
    noisy estimate of what inference meets.

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
