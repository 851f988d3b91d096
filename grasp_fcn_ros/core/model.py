"""The fully convolutional grasp network and its checkpoints.

The network maps a normalised 1 x 400 x 400 depth image to four per-pixel maps: grasp quality
Q, cos 2phi, sin 2phi and the gripper width normalised by :attr:`ModelConfig.max_width_px`.
Every convolution is followed by ReLU then BatchNorm, as in the published reference.
"""

from dataclasses import asdict, dataclass, fields
import json
import os

import torch
from torch import nn

CHECKPOINT_FORMAT = 'grasp_fcn/1'

#: Initial scale of the heads' BatchNorm: the targets are mostly 0 with small variance, so
#: starting the output spread near theirs, rather than at 1, saves many training steps.
HEAD_BN_INIT_SCALE = 0.1
#: Smallest magnitude training leaves the heads' BatchNorm scale (:func:`keep_heads_alive`):
#: below the spread of the angle targets (standard deviation over Cornell's training maps, not
#: turned: 0.09 for cos 2 phi, 0.04 for sin 2 phi, most rectangles being near 0 or 90 degrees).
HEAD_BN_MIN_SCALE = 0.02


class ModelError(RuntimeError):
    """Raised when a checkpoint cannot be loaded."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the network; stored in every checkpoint.

    :param input_size: side of the square input in pixels (the layer strides need 400).
    :param channels: feature channels of encoder levels 1-5 and the bottom.
    :param kernels: kernel sizes of encoder levels 1-5 (the decoder mirrors them).
    :param max_width_px: gripper width, in network pixels, that the width map's 1.0 stands for.
    :param metres_per_pixel: the scale of the training data, metres per network pixel at the
        scene depth (see :mod:`~grasp_fcn_ros.core.scale`); 0 when unknown.
    :param width_scale: calibration of the width map, fitted on the training images after
        training (:func:`~grasp_fcn_ros.training.evaluate.fit_width_scale`): post-processing
        reads a width of ``w * max_width_px * width_scale`` network pixels; 1.0 = none.
    """

    input_size: int = 400
    channels: tuple = (16, 32, 64, 128, 256, 512)
    kernels: tuple = (9, 5, 3, 3, 3)
    max_width_px: float = 150.0
    metres_per_pixel: float = 0.0
    width_scale: float = 1.0

    @property
    def width_px_per_unit(self):
        """Network pixels of gripper opening that a width map value of 1.0 reads as."""
        return float(self.max_width_px) * float(self.width_scale)

    def to_dict(self):
        data = asdict(self)
        data['channels'] = list(self.channels)
        data['kernels'] = list(self.kernels)
        return data

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f'unknown model config keys: {sorted(unknown)}')
        data = dict(data)
        for key in ('channels', 'kernels'):
            if key in data:
                data[key] = tuple(int(v) for v in data[key])
        return cls(**data)


def _conv(c_in, c_out, kernel, stride=1):
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2),
            nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)]


def _deconv(c_in, c_out, kernel, stride=1, output_padding=0):
    return [nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding=kernel // 2,
                               output_padding=output_padding),
            nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)]


class SkipJoin(nn.Module):
    """Joins a decoder feature with the encoder feature of the same size.

    ``x = BN(ReLU(Block(x + skip)))`` with Block = conv3x3-BN-ReLU-conv3x3-BN.
    """

    def __init__(self, channels):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.out = nn.Sequential(nn.ReLU(inplace=True), nn.BatchNorm2d(channels))

    def forward(self, x, skip):
        return self.out(self.block(x + skip))


class GraspFCN(nn.Module):
    """Encoder-decoder FCN predicting (Q, cos 2phi, sin 2phi, width) for every pixel."""

    #: Names of the output maps, in order.
    OUTPUTS = ('quality', 'cos', 'sin', 'width')

    def __init__(self, config=None):
        super().__init__()
        self.config = config or ModelConfig()
        ch, ks = self.config.channels, self.config.kernels
        if len(ch) != 6 or len(ks) != 5:
            raise ModelError('config needs 6 channel counts and 5 kernel sizes')
        encoder = []
        c_in = 1
        for c, k in zip(ch[:5], ks):
            encoder.append(nn.Sequential(*_conv(c_in, c, k, 2), *_conv(c, c, k, 1)))
            c_in = c
        self.encoder = nn.ModuleList(encoder)
        self.bottom = nn.Sequential(*_conv(ch[4], ch[5], 3), *_conv(ch[5], ch[5], 3))

        decoder, joins = [], []
        c_in = ch[5]
        # level 1 keeps the size (13 -> 13); the others double it, level 2 without
        # output_padding (13 -> 25), levels 3-5 with it (25 -> 50 -> 100 -> 200).
        for level, (c, k) in enumerate(zip(reversed(ch[:5]), reversed(ks))):
            stride = 1 if level == 0 else 2
            pad_out = 1 if level >= 2 else 0
            decoder.append(nn.Sequential(*_deconv(c_in, c, k, stride, pad_out),
                                         *_deconv(c, c, k, 1)))
            joins.append(SkipJoin(c))
            c_in = c
        self.decoder = nn.ModuleList(decoder)
        self.joins = nn.ModuleList(joins)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(ch[0], 1, 5, 2, padding=2, output_padding=1),
                          nn.BatchNorm2d(1))
            for _ in self.OUTPUTS)
        for head in self.heads:
            nn.init.constant_(head[1].weight, HEAD_BN_INIT_SCALE)

    def forward(self, x):
        """:param x: (N, 1, 400, 400) normalised depth. :returns: (N, 4, 400, 400) maps."""
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        x = self.bottom(x)
        for level, join, skip in zip(self.decoder, self.joins, reversed(skips)):
            x = join(level(x), skip)
        return torch.cat([head(x) for head in self.heads], dim=1)


@torch.no_grad()
def keep_heads_alive(model, min_scale=HEAD_BN_MIN_SCALE):
    """Raise the magnitude of each head's BatchNorm scale to at least ``min_scale``, its sign
    kept (0 counts as positive).

    A head ends in a one-channel BatchNorm: its output is ``scale * normalised + bias``. While
    the features do not yet tell a head's target, the loss pulls the scale towards 0; at 0 the
    head outputs a constant and passes its convolution (and the network) no gradient, and
    nothing brings it back. Fine-tuned from synthetic pre-training (whose angle heads ended at
    0.012), runs lost the cos head that way (every angle then read 45 or 135 degrees) or the
    sin head (0 or 90 degrees: a diagonal object gets a grasp turned 45 degrees from it).

    :param model: a :class:`GraspFCN` (not a DistributedDataParallel wrapper).
    :returns: names (:attr:`GraspFCN.OUTPUTS`) of the heads raised.
    """
    raised = []
    for name, head in zip(GraspFCN.OUTPUTS, model.heads):
        scale = head[1].weight
        if scale.abs().min() < min_scale:
            scale.copy_(torch.where(scale < 0, -1.0, 1.0) * scale.abs().clamp(min=min_scale))
            raised.append(name)
    return raised


def count_parameters(model):
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_checkpoint(path, model, extra=None, half=False):
    """Write a checkpoint: the state_dict, the architecture config and optional metadata.

    :param path: file to write (the folder is created).
    :param model: a :class:`GraspFCN`.
    :param extra: JSON-like metadata (epoch, metrics, training config), kept as plain types.
    :param half: store the floating-point tensors in fp16: half the file, for shipping a
        model (loading casts them back into the fp32 network; integer buffers stay as they
        are). Training checkpoints stay fp32.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    _write_payload(path, {'format': CHECKPOINT_FORMAT, 'config': model.config.to_dict(),
                          'state_dict': state, 'meta': extra or {}})


def _write_payload(path, payload):
    """Write a checkpoint payload atomically (a temporary file, then a rename), its folder
    created."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp'
    torch.save(payload, tmp)
    os.replace(tmp, path)


def rewrite_checkpoint(source, destination, config_changes, meta_changes=None):
    """Copy a checkpoint with config entries changed (such as ``width_scale``), its weights
    untouched (an fp16 file stays fp16).

    :param source: checkpoint to read (with ``weights_only=True``).
    :param destination: file to write (may be ``source``).
    :param config_changes: dict of :class:`ModelConfig` fields to set.
    :param meta_changes: dict merged into the metadata.
    :raises ModelError: for an unreadable checkpoint or an unknown config field.
    """
    payload = load_checkpoint(source)
    config = ModelConfig.from_dict(dict(payload['config'], **config_changes))
    _write_payload(destination, dict(
        payload, config=config.to_dict(),
        meta=dict(payload.get('meta') or {}, **(meta_changes or {}))))


def update_model_card(path, entries):
    """Set entries of the JSON model card beside a checkpoint (created when missing).

    :param path: the checkpoint (the card is :func:`model_card_path`).
    :param entries: dict of JSON values to set.
    :returns: the card's path.
    """
    card = model_card_path(path)
    data = {}
    if os.path.isfile(card):
        with open(card) as stream:
            data = json.load(stream)
    data.update(entries)
    tmp = f'{card}.tmp'
    with open(tmp, 'w') as stream:
        json.dump(data, stream, indent=2)
        stream.write('\n')
    os.replace(tmp, card)
    return card


def save_random_checkpoint(path, seed=0, extra=None):
    """Write a checkpoint of the architecture with seeded random (untrained) weights.

    The same seed gives the same weights; the caller's torch random state is left as it was.

    :param path: file to write (the folder is created).
    :param seed: torch seed of the initialisation.
    :param extra: metadata added to ``{'trained': False}``.
    :returns: ``path``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = GraspFCN().eval()
    save_checkpoint(path, model, {'trained': False, **(extra or {})})
    return path


#: Config entries a checkpoint written before they existed takes from its model card.
CARD_CONFIG_KEYS = ('metres_per_pixel', 'width_scale')


def model_card_path(path):
    """The JSON model card beside a checkpoint: ``<name>.json`` for ``<name>.pt``."""
    return os.path.splitext(path)[0] + '.json'


def load_checkpoint(path, map_location='cpu'):
    """Read a checkpoint with ``weights_only=True``.

    A checkpoint written before models recorded their scale or their width calibration takes
    ``metres_per_pixel`` and ``width_scale`` from its model card (:func:`model_card_path`) when
    the card has them.

    :returns: the raw payload dict (``config``, ``state_dict``, ``meta``).
    :raises ModelError: naming the path, when the file is missing, corrupt or not ours.
    """
    if not os.path.isfile(path):
        raise ModelError(f'model file not found: {path}')
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelError(f'cannot read model file {path}: {exc}') from exc
    if not isinstance(payload, dict) or 'state_dict' not in payload or 'config' not in payload:
        raise ModelError(f'{path} is not a grasp_fcn checkpoint (no state_dict/config)')
    card = model_card_path(path)
    missing = [key for key in CARD_CONFIG_KEYS if key not in payload['config']]
    if missing and os.path.isfile(card):
        try:
            with open(card) as stream:
                data = json.load(stream)
            found = {key: float(data[key]) for key in missing if key in data}
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f'cannot read the model card {card}: {exc!r}') from exc
        payload['config'] = dict(payload['config'], **found)
    return payload


def load_model(path, map_location='cpu'):
    """Build a :class:`GraspFCN` from a checkpoint, in eval mode.

    :returns: ``(model, meta)``.
    :raises ModelError: naming the path, on any failure.
    """
    payload = load_checkpoint(path, map_location)
    try:
        model = GraspFCN(ModelConfig.from_dict(payload['config']))
        model.load_state_dict(payload['state_dict'])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f'{path} does not match the network: {exc}') from exc
    model.eval()
    return model, dict(payload.get('meta') or {})
