import torch
from torch import nn

from grasp_fcn_ros.core.model import GraspFCN
from grasp_fcn_ros.training.renorm import (
    BatchRenorm2d,
    recalibrate_batchnorm,
    set_renorm_limits,
    use_batch_renorm,
)


def _pair():
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    plain.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    plain.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    plain.weight.data.uniform_(0.5, 1.5)
    plain.bias.data.uniform_(-1, 1)
    renorm = nn.BatchNorm2d(3)
    renorm.load_state_dict(plain.state_dict())
    (layer,) = use_batch_renorm(nn.Sequential(renorm))
    return plain, layer


def test_without_limits_it_is_batchnorm_in_training():
    plain, renorm = _pair()
    x = torch.randn(4, 3, 8, 8) * 3 + 1
    torch.testing.assert_close(renorm.train()(x), plain.train()(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(renorm.running_mean, plain.running_mean)
    torch.testing.assert_close(renorm.running_var, plain.running_var)


def test_with_wide_limits_training_output_equals_inference_output():
    plain, renorm = _pair()
    set_renorm_limits([renorm], step=10, warmup_steps=10, r_max=100.0, d_max=100.0)
    x = torch.randn(4, 3, 8, 8) * 3 + 1
    expected = plain.eval()(x)
    torch.testing.assert_close(renorm.train()(x), expected, rtol=1e-4, atol=1e-4)


def test_inference_and_checkpoints_are_plain_batchnorm():
    model = GraspFCN()
    layers = use_batch_renorm(model)
    assert len(layers) == sum(isinstance(m, BatchRenorm2d) for m in model.modules()) > 40
    plain = GraspFCN()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 400, 400)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain.eval()(x))


def test_limits_relax_linearly():
    _, renorm = _pair()
    set_renorm_limits([renorm], step=50, warmup_steps=100)
    assert (renorm.r_max, renorm.d_max) == (2.0, 2.5)
    set_renorm_limits([renorm], step=500, warmup_steps=100)
    assert (renorm.r_max, renorm.d_max) == (3.0, 5.0)


def test_recalibration_sets_the_average_statistics_of_the_batches():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    model[1].running_mean.fill_(7.0)
    model.eval()  # recalibration runs in train mode, and leaves the model there
    weights = [p.clone() for p in model.parameters()]
    batches = [torch.randn(2, 1, 4, 4) * s + m for s, m in ((1.0, 0.0), (2.0, 3.0), (0.5, -1.0))]
    assert recalibrate_batchnorm(model, iter(batches)) == 3
    with torch.no_grad():
        features = [model[0](x) for x in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-5, atol=1e-6)
    assert model[1].momentum == 0.1 and model.training
    assert int(model[1].num_batches_tracked) == 3
    for before, after in zip(weights, model.parameters()):
        torch.testing.assert_close(before, after)


def test_recalibration_without_batches_keeps_the_statistics():
    layer = nn.BatchNorm2d(2)
    layer.running_var.fill_(3.0)
    assert recalibrate_batchnorm(nn.Sequential(layer), iter([])) == 0
    assert layer.running_var.tolist() == [3.0, 3.0] and layer.momentum == 0.1
