"""Averaged inference: several networks, and the left-right mirrored view, as one backend.

Each member backend runs on the input; with ``mirror`` each also runs on the input mirrored
left to right, and its maps are mirrored back. A mirrored image shows each grasp of angle phi
at pi - phi: cos 2phi is unchanged and sin 2phi changes sign, so the mirrored output's sin 2phi
map is negated before averaging. The raw outputs (Q, cos 2phi, sin 2phi, width) are then
averaged, the way the angle's two components are best averaged (as a vector, not as angles);
members with different width calibrations (``width_scale``) have their width maps brought to
the first member's before the average.

The cost is one network pass per member and view: two members with ``mirror`` run the network
four times per frame. A member gets the input and its mirror image as one batch of two, one
call: a GPU runs the two views side by side (one replay of a CUDA graph captured for the
batch), where two calls in a row would pay its per-call launch cost twice.
"""

import numpy as np

from .devices import warm_up
from .model import ModelError

#: Output channels of sin 2phi and of the width (see :attr:`~.model.GraspFCN.OUTPUTS`).
SIN_CHANNEL = 2
WIDTH_CHANNEL = 3


def mirror_output(output):
    """The maps of a mirrored input, brought back to the unmirrored image.

    :param output: float32 (N, 4, S, S) network output of a left-right mirrored input.
    :returns: float32 (N, 4, S, S): mirrored back, sin 2phi negated.
    """
    back = np.array(output[..., ::-1], dtype=np.float32)
    back[:, SIN_CHANNEL] *= -1.0
    return back


class AveragedBackend:
    """Averages the outputs of member backends and, optionally, of the mirrored view.

    :param members: backends (see :mod:`~grasp_fcn_ros.core.backends`) of models with the
        same input size, maximum width and metric scale.
    :param mirror: also run each member on the left-right mirrored input.
    :raises ModelError: without members, or when the members' models disagree on input size,
        width scale or metric scale.
    """

    def __init__(self, members, mirror=False):
        members = list(members)
        if not members:
            raise ModelError('an averaged backend needs at least one model')
        first = members[0].config
        for member in members[1:]:
            c = member.config
            if (c.input_size, c.max_width_px, c.metres_per_pixel) != (
                    first.input_size, first.max_width_px, first.metres_per_pixel):
                raise ModelError(
                    'models averaged together must share input size, max width and scale: '
                    f'{first.input_size} px / {first.max_width_px} px / '
                    f'{first.metres_per_pixel} m per px against {c.input_size} / '
                    f'{c.max_width_px} / {c.metres_per_pixel}')
        self.members = members
        self.mirror = bool(mirror)
        self.config = first
        # each member's width calibration, relative to the first's, which the config carries
        self._width_factors = [float(m.config.width_scale) / float(first.width_scale)
                               for m in members]
        lead = members[0]
        self.meta = dict(getattr(lead, 'meta', None) or {})
        self.device = lead.device
        self.precision = getattr(lead, 'precision', 'fp32')
        self.threads = getattr(lead, 'threads', None)
        # what built the first member (runtime choice, export time, cache) describes them all
        for name in ('choice', 'prepare_s', 'cached', 'plan'):
            if hasattr(lead, name):
                setattr(self, name, getattr(lead, name))
        views = ' + mirrored view' if self.mirror else ''
        models = f' x {len(members)} models' if len(members) > 1 else ''
        self.name = f'{lead.name}{models}{views}'

    @property
    def passes(self):
        """Network passes per frame."""
        return len(self.members) * (2 if self.mirror else 1)

    def describe(self):
        """One line: what is averaged."""
        views = ' and its mirror image' if self.mirror else ''
        return f'mean of {len(self.members)} model(s) on the input{views}: {self.passes} passes'

    def predict(self, batch):
        """:param batch: float32 (N, 1, S, S). :returns: float32 (N, 4, S, S) mean maps."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        count = len(batch)
        if self.mirror:  # both views in one call: (2N, 1, S, S), the mirrored half second
            batch = np.concatenate([batch, batch[..., ::-1]])
        total = None
        for member, width_factor in zip(self.members, self._width_factors):
            output = member.predict(batch)
            outputs = [output[:count]]
            if self.mirror:
                outputs.append(mirror_output(output[count:]))
            for output in outputs:
                output = output.astype(np.float64)
                if width_factor != 1.0:
                    output[:, WIDTH_CHANNEL] *= width_factor
                total = output if total is None else total + output
        return (total / self.passes).astype(np.float32)

    def warmup(self, runs=2):
        """Run the members on a zero input of the batch they will get (the mirrored view doubles
        it: a CUDA graph is captured for that shape here, not on the first frame)."""
        warm_up(self, runs)
