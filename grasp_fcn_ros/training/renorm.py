"""Batch Renormalization for training the network's BatchNorm layers.

With small batches of dissimilar depth images, plain BatchNorm trains on per-batch statistics
that the running averages used at inference do not reproduce, and the trained network scores
far worse in eval mode than in train mode. Batch Renormalization (Ioffe, 2017) corrects the
batch statistics towards the running ones during training, so training sees what inference
sees. It changes training only: the layers keep BatchNorm2d's parameters and buffers, so
checkpoints load into the plain network.
"""

import torch
from torch import nn


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
