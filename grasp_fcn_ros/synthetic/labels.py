"""Grasp labels from a scene's geometry: top-down parallel-jaw grasps checked for contacts,
friction and room for the jaws, written as image rectangles.

The scene is seen from above on a fine grid of the table (:class:`TopDownGrid`): for every
cell, the height intervals filled by the topmost object and the one under it (objects stack two
high at most), and the top surface of everything (objects, table, floor). A grasp is a centre
on an object, an angle in the table plane, an opening and a jaw size; it is **positive** when

1. *contacts*: at the contact height (half way down the object's column at the centre, or
   ``finger_length_m`` below its top when that is higher) the closing line leaves the grasped
   object's cross-section on both sides into free space (not into another object), at two
   contacts closer than the opening less a margin on each side; the grasp's centre is the
   contacts' midpoint. A share of the candidates instead close the jaws from the full opening
   onto the object's outside, ``finger_length_m`` below the object's top: a cup or a ring
   held around its body, which the walk out from a centre on its floor cannot find; either
   way the centre lies on the grasped object's top (a grasp centred over the table inside a
   ring is not a label);
2. *friction*: the cross-section's normal at each contact (in the table plane) lies within the
   friction cone (half-angle ``atan(friction)``) of the closing axis;
3. *fit*: the opening (contact width plus margins) is at most the gripper's ``max_opening_m``;
4. *jaws*: under each jaw's footprint (``finger_width_m`` along the closing axis, the jaw size
   across it, just outside the opening) the top surface lies at or below the contact height,
   so the jaw goes down beside the object and lands on nothing; every object in the footprint,
   the grasped one's other parts included, counts;
5. *closing*: between each jaw and its contact nothing stands at the contact height;
6. *reach*: nothing between the jaws rises more than ``finger_length_m`` above the contact
   height (the palm stays clear).

Candidates (centre, angle, margin, jaw size) are drawn over each object's visible top and the
positives thinned to a spread set; openings and jaw sizes follow Cornell's rectangles (measured:
openings 3-13 cm, jaw sizes 2.7-6.7 cm, 5th-95th percentile).
"""

from dataclasses import dataclass

import cv2
import numpy as np

from ..core.grasp import Grasp2D, wrap_angle

#: Reasons a candidate fails (``GraspEvaluation.reason``); 0 is a positive.
(OK, NOT_AN_OBJECT, NEIGHBOUR, TOO_WIDE, TOO_THIN, FRICTION, JAW, CLOSING, REACH,
 OFF_CENTRE) = range(10)
REASONS = ('ok', 'not an object', 'neighbour in the way', 'too wide', 'too thin', 'friction',
           'jaw footprint not clear', 'closing path not clear', 'palm not clear',
           'centre not on the object')


@dataclass(frozen=True)
class GraspConfig:
    """The gripper and the label sampling.

    :param max_opening_m: the gripper's largest opening, metres.
    :param finger_width_m: jaw thickness along the closing direction, metres.
    :param finger_length_m: how far the fingertips reach below the palm, metres.
    :param friction: Coulomb coefficient; the friction cone's half-angle is ``atan(friction)``.
    :param min_contact_width_m: thinner cross-sections are not grasped, metres.
    :param margin_m: range of the extra opening on each side of the contacts, metres.
    :param jaw_m: range of jaw sizes (across the closing direction), metres.
    :param min_jaw_m: smallest jaw size: a candidate that fails for want of room is tried
        again with half its jaw size, down to this, metres.
    :param cell_m: spacing of the top-down grid, metres.
    :param normal_radius_m: radius around a contact that its normal is estimated over, metres.
    :param candidates_per_object: candidates drawn on each object.
    :param enclose_share: share of them whose jaws close onto the object's outside (see
        :meth:`TopDownGrid.evaluate`).
    :param max_per_object: most positives kept per object.
    :param min_spacing_m: kept positives of an object differ by this much in position ...
    :param min_angle_deg: ... or this much in angle.
    """

    max_opening_m: float = 0.15
    finger_width_m: float = 0.01
    finger_length_m: float = 0.05
    friction: float = 0.4
    min_contact_width_m: float = 0.004
    margin_m: tuple = (0.005, 0.025)
    jaw_m: tuple = (0.02, 0.07)
    min_jaw_m: float = 0.015
    cell_m: float = 0.001
    normal_radius_m: float = 0.003
    candidates_per_object: int = 300
    enclose_share: float = 0.3
    max_per_object: int = 10
    min_spacing_m: float = 0.012
    min_angle_deg: float = 20.0


@dataclass
class GraspLabel:
    """A positive top-down grasp in the table frame.

    :param obj: index of the grasped object in the scene.
    :param centre: (3,) the grasp centre on the object's top surface, table frame, metres.
    :param angle: closing direction in the table plane (from +x towards +y), radians.
    :param opening_m: distance between the jaws, metres.
    :param jaw_m: jaw size across the closing direction, metres.
    :param contact_z: height of the contacts above the table, metres.
    """

    obj: int
    centre: np.ndarray
    angle: float
    opening_m: float
    jaw_m: float
    contact_z: float

    def corners(self):
        """The rectangle's corners (4, 3) at the top surface, in Cornell's order: p0 -> p1
        along the opening, p1 -> p2 along a jaw."""
        d = np.array([np.cos(self.angle), np.sin(self.angle), 0.0])
        n = np.array([-d[1], d[0], 0.0])
        a, b = d * self.opening_m / 2, n * self.jaw_m / 2
        c = np.asarray(self.centre, np.float64)
        return np.array([c - a - b, c + a - b, c + a + b, c - a + b])

    def to_image(self, camera):
        """The rectangle in the depth image: a :class:`~grasp_fcn_ros.core.grasp.Grasp2D`."""
        pixels, _ = camera.project(self.corners())
        return Grasp2D.from_polygon(pixels)

    def describe(self):
        return {'object': int(self.obj), 'centre_m': [round(float(v), 5) for v in self.centre],
                'angle_rad': round(float(self.angle), 5), 'opening_m': round(self.opening_m, 5),
                'jaw_m': round(self.jaw_m, 5), 'contact_z_m': round(self.contact_z, 5)}


@dataclass
class GraspEvaluation:
    """Candidates' outcomes (arrays over candidates)."""

    reason: np.ndarray
    centre: np.ndarray
    opening: np.ndarray
    jaw: np.ndarray
    contact_z: np.ndarray
    surface_z: np.ndarray
    obj: np.ndarray
    angle: np.ndarray

    @property
    def positive(self):
        return self.reason == OK


class TopDownGrid:
    """The scene seen from straight above on a fine grid of the table.

    :ivar top: (ny, nx) height of the highest surface (objects, else table or floor), metres.
    :ivar layers: for the topmost object and the one under it, ``(ids, bottom, top)`` grids
        (id -1 / bottom +inf / top -inf where there is none).
    """

    def __init__(self, scene, cell_m=0.001, margin_m=0.12):
        self.scene = scene
        self.cell = float(cell_m)
        if scene.objects:
            corners = np.concatenate([o.footprint() for o in scene.objects])
        else:
            corners = np.zeros((1, 2))
        lo = corners.min(0) - margin_m
        hi = corners.max(0) + margin_m
        self.nx = int(np.ceil((hi[0] - lo[0]) / self.cell))
        self.ny = int(np.ceil((hi[1] - lo[1]) / self.cell))
        self.x0, self.y0 = float(lo[0]), float(lo[1])
        xs = self.x0 + (np.arange(self.nx) + 0.5) * self.cell
        ys = self.y0 + (np.arange(self.ny) + 0.5) * self.cell
        shape = (self.ny, self.nx)
        ids1, ids2 = np.full(shape, -1, np.int32), np.full(shape, -1, np.int32)
        bot1, bot2 = np.full(shape, np.inf), np.full(shape, np.inf)
        top1, top2 = np.full(shape, -np.inf), np.full(shape, -np.inf)
        for index, obj in enumerate(scene.objects):
            fp = obj.footprint()
            j0, i0 = self._index(fp.min(0))
            j1, i1 = self._index(fp.max(0))
            j0, i0 = max(j0 - 1, 0), max(i0 - 1, 0)
            j1, i1 = min(j1 + 2, self.nx), min(i1 + 2, self.ny)
            if j0 >= j1 or i0 >= i1:
                continue
            gx, gy = np.meshgrid(xs[j0:j1], ys[i0:i1])
            local = obj.to_local(np.stack([gx, gy, np.zeros_like(gx)], -1))
            bottom, top = obj.shape.column(local[..., 0], local[..., 1])
            bottom = (bottom + obj.z).reshape(gx.shape)
            top = (top + obj.z).reshape(gx.shape)
            present = np.isfinite(top)
            win = (slice(i0, i1), slice(j0, j1))
            higher = present & (top > top1[win])
            second = present & ~higher & (top > top2[win])
            for dst, src in ((ids2, ids1), (bot2, bot1), (top2, top1)):
                dst[win][higher] = src[win][higher]
            ids1[win][higher], bot1[win][higher], top1[win][higher] = (
                index, bottom[higher], top[higher])
            ids2[win][second], bot2[win][second], top2[win][second] = (
                index, bottom[second], top[second])
        gx, gy = np.meshgrid(xs, ys)
        ground = np.where(scene.room.on_table(gx, gy), 0.0, scene.room.floor_z)
        self.ground = ground
        self.top = np.maximum(ground, top1)
        self.layers = ((ids1, bot1, top1), (ids2, bot2, top2))
        self._flat_layers = tuple(tuple(a.ravel() for a in layer) for layer in self.layers)
        self.object_top = np.array([o.top for o in scene.objects] + [0.0])
        # the top surface's slope, smoothed over a few millimetres: the guide of candidate
        # angles across edges and walls
        smooth = cv2.GaussianBlur(self.top.astype(np.float32), (0, 0), 0.004 / self.cell)
        self.slope = (cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / (8 * self.cell),
                      cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / (8 * self.cell))
        self.graspable = np.array([o.graspable for o in scene.objects] + [False], bool)

    def _index(self, xy):
        j = int(np.floor((xy[0] - self.x0) / self.cell))
        i = int(np.floor((xy[1] - self.y0) / self.cell))
        return j, i

    def cells(self, x, y):
        """Grid indices of table points (clipped to the grid)."""
        j = np.clip(((x - self.x0) * (1 / self.cell)).astype(np.int64), 0, self.nx - 1)
        i = np.clip(((y - self.y0) * (1 / self.cell)).astype(np.int64), 0, self.ny - 1)
        return i, j

    def _flat(self, x, y):
        i, j = self.cells(x, y)
        return i * self.nx + j

    def centres(self, i, j):
        return np.stack([self.x0 + (j + 0.5) * self.cell, self.y0 + (i + 0.5) * self.cell], -1)

    def owner(self, x, y, z):
        """Index of the object filling table points at heights ``z`` (-1: free)."""
        f = self._flat(x, y)
        (ids1, bot1, top1), (ids2, bot2, top2) = self._flat_layers
        in1 = (bot1.take(f) <= z) & (z <= top1.take(f))
        in2 = (bot2.take(f) <= z) & (z <= top2.take(f))
        return np.where(in1, ids1.take(f), np.where(in2, ids2.take(f), -1))

    def top_at(self, x, y):
        return self.top.ravel().take(self._flat(x, y))

    def topmost(self, x, y):
        """Index of the topmost object above table points (-1: none) and its column."""
        f = self._flat(x, y)
        return tuple(a.take(f) for a in self._flat_layers[0])

    def _walk(self, points, d, z, obj, max_length):
        """Walk from each point along ``d`` at height ``z`` until leaving the object ``obj``.

        :returns: ``(distance, into)``: distance to the boundary (half way between the last
            sample in the object and the first out of it; NaN when the object is not left
            within ``max_length``) and the object entered there (-1: free space).
        """
        n = len(points)
        distance = np.full(n, np.nan)
        into = np.full(n, -1)
        todo = np.arange(n)
        chunk = 24
        count = int(np.ceil(max_length / self.cell)) + 1
        for start in range(0, count, chunk):
            if len(todo) == 0:
                break
            s = np.arange(start, min(start + chunk, count)) * self.cell
            p = points[todo, None, :] + s[None, :, None] * d[todo, None, :]
            own = self.owner(p[..., 0], p[..., 1], z[todo, None])
            leaves = own != obj[todo, None]
            first = np.argmax(leaves, axis=1)
            rows = np.arange(len(todo))
            found = leaves[rows, first]
            done = todo[found]
            distance[done] = s[first[found]] - 0.5 * self.cell
            into[done] = own[rows, first][found]
            todo = todo[~found]
        return distance, into

    def _walk_in(self, points, d, z, half):
        """Close a jaw from ``half`` metres along ``d`` towards each point (and on past it,
        to ``-half``) at height ``z`` until it meets a solid.

        :returns: ``(distance, into)``: the contact's distance from the point along ``d``
            (NaN when nothing is met; +inf when the jaw starts inside a solid) and the object
            met.
        """
        n = len(points)
        distance = np.full(n, np.nan)
        into = np.full(n, -1)
        todo = np.arange(n)
        count = int(np.ceil(2 * half / self.cell)) + 1
        chunk = 24
        for start in range(0, count, chunk):
            if len(todo) == 0:
                break
            s = half - np.arange(start, min(start + chunk, count)) * self.cell
            p = points[todo, None, :] + s[None, :, None] * d[todo, None, :]
            own = self.owner(p[..., 0], p[..., 1], z[todo, None])
            met = own >= 0
            first = np.argmax(met, axis=1)
            rows = np.arange(len(todo))
            found = met[rows, first]
            done = todo[found]
            distance[done] = np.where(start + first[found] == 0, np.inf,
                                      s[first[found]] + 0.5 * self.cell)
            into[done] = own[rows, first][found]
            todo = todo[~found]
        return distance, into

    def evaluate(self, points, angles, margins, jaws, config, enclose=None):
        """Check candidate grasps: centre points (N, 2) on objects' tops, closing angles (N,),
        margins and jaw sizes (N,), metres. Returns a :class:`GraspEvaluation`.

        :param enclose: bool (N,) or None: candidates whose jaws close from the gripper's full
            opening onto the object's outside at a height set by the object's top (a cup or a
            ring held around its body), instead of contacts found walking out from the centre
            point at a height set by the point's own column (the default: rims, solids).

        Each check runs on the candidates that passed the ones before it.
        """
        points = np.atleast_2d(np.asarray(points, np.float64))
        angles = np.asarray(angles, np.float64).ravel()
        margins = np.asarray(margins, np.float64).ravel()
        jaws = np.asarray(jaws, np.float64).ravel()
        n = len(points)
        reason = np.zeros(n, np.int8)
        obj, bottom, top = self.topmost(points[:, 0], points[:, 1])
        reason[(obj < 0) | ~self.graspable[obj]] = NOT_AN_OBJECT
        contact_z = np.zeros(n)
        centre = points.copy()
        opening = np.zeros(n)
        surface = np.full(n, np.nan)
        out = GraspEvaluation(reason, centre, opening, jaws.copy(), contact_z, surface, obj,
                              wrap_angle(angles))
        enclose = np.zeros(n, bool) if enclose is None else np.asarray(enclose, bool).ravel()
        d = np.stack([np.cos(angles), np.sin(angles)], -1)
        across = np.stack([-d[:, 1], d[:, 0]], -1)
        step = self.cell
        with np.errstate(invalid='ignore'):  # no object: +inf bottom, -inf top
            low = 0.5 * (top + bottom)
        half_width = np.zeros(n)

        # 1. contacts at the contact height, walking out from the point ...
        k = np.flatnonzero((reason == OK) & ~enclose)
        contact_z[k] = np.maximum(low[k], top[k] - config.finger_length_m)
        exits = []
        for side in (-1.0, 1.0):
            distance, into = self._walk(points[k], side * d[k], contact_z[k], obj[k],
                                        config.max_opening_m)
            reason[k[np.isnan(distance)]] = TOO_WIDE
            reason[k[into >= 0]] = NEIGHBOUR
            exits.append(np.nan_to_num(distance))
        half_width[k] = 0.5 * (exits[0] + exits[1])
        centre[k] = points[k] + (0.5 * (exits[1] - exits[0]))[:, None] * d[k]
        # ... or closing in from the full opening onto the object's outside
        k = np.flatnonzero((reason == OK) & enclose)
        contact_z[k] = np.maximum(low[k], self.object_top[obj[k]] - config.finger_length_m)
        reach = config.max_opening_m / 2
        ends = []
        for side in (-1.0, 1.0):
            distance, into = self._walk_in(points[k], side * d[k], contact_z[k], reach)
            reason[k[~np.isfinite(distance)]] = TOO_WIDE
            reason[k[(into >= 0) & (into != obj[k])]] = NEIGHBOUR
            ends.append(np.nan_to_num(distance, posinf=0.0))
        half_width[k] = 0.5 * (ends[0] + ends[1])
        centre[k] = points[k] + (0.5 * (ends[1] - ends[0]))[:, None] * d[k]
        k = k[reason[k] == OK]  # nothing else between the contacts
        between = _ticks_between(-half_width[k], half_width[k], step * 2, 3)
        owned = self._owned(centre[k], d[k], across[k], between, np.zeros((len(k), 1)),
                            contact_z[k])
        reason[k[((owned >= 0) & (owned != obj[k, None])).any(1)]] = NEIGHBOUR

        k = np.flatnonzero(reason == OK)
        # the centre on the object's top (not the table in a ring's hole)
        reason[k[self.topmost(centre[k, 0], centre[k, 1])[0] != obj[k]]] = OFF_CENTRE
        k = np.flatnonzero(reason == OK)
        width = 2 * half_width[k]
        opening[k] = width + 2 * margins[k]
        reason[k[width < config.min_contact_width_m]] = TOO_THIN
        reason[k[(reason[k] == OK) & (opening[k] > config.max_opening_m)]] = TOO_WIDE

        # 2. friction: the cross-section's normal at each contact, from the solid around it
        offsets = _disc(config.normal_radius_m, step)
        cos_cone = np.cos(np.arctan(config.friction))
        for side in (-1.0, 1.0):
            k = np.flatnonzero(reason == OK)
            contact = centre[k] + side * half_width[k, None] * d[k]
            q = contact[:, None, :] + offsets[None]
            solid = self.owner(q[..., 0], q[..., 1], contact_z[k, None]) == obj[k, None]
            inward = (solid[..., None] * offsets[None]).sum(1)
            with np.errstate(invalid='ignore', divide='ignore'):
                cos = -(inward * (side * d[k])).sum(1) / np.linalg.norm(inward, axis=1)
            reason[k[~(cos >= cos_cone)]] = FRICTION

        # 4-5. each jaw's footprint, then its closing path
        for side in (-1.0, 1.0):
            k = np.flatnonzero(reason == OK)
            lateral = _ticks(jaws[k], step * 3, 5)
            half = opening[k] / 2
            along = half[:, None] + _ticks_between(np.zeros(len(k)),
                                                   np.full(len(k), config.finger_width_m),
                                                   step * 2, 3)
            high = self._sample(centre[k], d[k], across[k], side * along, lateral,
                                self.top).max(1)
            reason[k[high > contact_z[k] + 1e-6]] = JAW
            k = np.flatnonzero(reason == OK)
            lateral = _ticks(jaws[k], step * 3, 5)
            path = _ticks_between(half_width[k] + step, opening[k] / 2, step * 2, 3)
            owned = self._owned(centre[k], d[k], across[k], side * path, lateral, contact_z[k])
            reason[k[(owned >= 0).any(1)]] = CLOSING

        # 6. the palm: nothing between the jaws higher than the fingers reach
        k = np.flatnonzero(reason == OK)
        lateral = _ticks(jaws[k], step * 5, 5)
        reach = opening[k] / 2 + config.finger_width_m
        span = _ticks_between(-reach, reach, step * 5, 5)
        high = self._sample(centre[k], d[k], across[k], span, lateral, self.top).max(1)
        reason[k[high - contact_z[k] > config.finger_length_m + 1e-3]] = REACH
        k = np.flatnonzero(reason == OK)
        surface[k] = self.top_at(centre[k, 0], centre[k, 1])
        return out

    def _points(self, centre, d, across, along, lateral):
        """Points (N, A * L, 2) at ``along`` (N, A) and ``lateral`` (N, L) of each grasp."""
        p = (centre[:, None, None, :] + along[:, :, None, None] * d[:, None, None, :]
             + lateral[:, None, :, None] * across[:, None, None, :])
        return p.reshape(len(centre), along.shape[1] * lateral.shape[1], 2)

    def _sample(self, centre, d, across, along, lateral, grid):
        p = self._points(centre, d, across, along, lateral)
        return grid.ravel().take(self._flat(p[..., 0], p[..., 1]))

    def _owned(self, centre, d, across, along, lateral, z):
        p = self._points(centre, d, across, along, lateral)
        return self.owner(p[..., 0], p[..., 1], z[:, None])

    def sample(self, rng, config, objects=None):
        """Draw candidates on each graspable object's visible top, check them and keep a
        spread set of positives. Returns a list of :class:`GraspLabel`."""
        ids1 = self.layers[0][0]
        labels = []
        indices = range(len(self.scene.objects)) if objects is None else objects
        for index in indices:
            if not self.scene.objects[index].graspable:
                continue
            i, j = np.nonzero(ids1 == index)
            if len(i) == 0:
                continue
            m = config.candidates_per_object
            pick = rng.integers(0, len(i), m)
            points = self.centres(i[pick], j[pick]) + rng.uniform(-0.5, 0.5, (m, 2)) * self.cell
            # half the angles at random, half across the top surface's slope at the point
            # (across edges, walls and rims), where it has one
            angles = rng.uniform(0, np.pi, m)
            gx, gy = self.slope[0][i[pick], j[pick]], self.slope[1][i[pick], j[pick]]
            guided = (rng.random(m) < 0.5) & (np.hypot(gx, gy) > 0.05)
            angles[guided] = (np.arctan2(gy, gx)[guided]
                              + rng.normal(0, np.deg2rad(8), int(guided.sum())))
            margins = rng.uniform(*config.margin_m, m)
            jaws = rng.uniform(*config.jaw_m, m)
            enclose = rng.random(m) < config.enclose_share
            result = self.evaluate(points, angles, margins, jaws, config, enclose)
            # where the drawn jaw size does not fit (a cup's inside, a gap), smaller ones
            for _ in range(2):
                tight = np.flatnonzero(((result.reason == JAW) | (result.reason == CLOSING))
                                       & (result.jaw > config.min_jaw_m))
                if len(tight) == 0:
                    break
                smaller = np.maximum(result.jaw[tight] / 2, config.min_jaw_m)
                retry = self.evaluate(points[tight], angles[tight], margins[tight], smaller,
                                      config, enclose[tight])
                _replace(result, tight, retry)
            labels.extend(_spread(result, rng, config))
        return labels


def _replace(result, where, other):
    """Overwrite an evaluation's candidates ``where`` with another evaluation of them."""
    for name in result.__dataclass_fields__:
        getattr(result, name)[where] = getattr(other, name)


def _spread(result, rng, config):
    """A spread subset of an evaluation's positives."""
    chosen = []
    min_angle = np.deg2rad(config.min_angle_deg)
    positives = np.flatnonzero(result.positive)
    # larger jaws first (Cornell's rectangles are broad), in random order among similar ones
    priority = result.jaw[positives] * rng.uniform(0.7, 1.0, len(positives))
    for k in positives[np.argsort(-priority, kind='stable')]:
        c, a = result.centre[k], result.angle[k]
        if any(np.hypot(*(c - g.centre[:2])) < config.min_spacing_m
               and abs(wrap_angle(a - g.angle)) < min_angle for g in chosen):
            continue
        chosen.append(GraspLabel(int(result.obj[k]), np.array([c[0], c[1], result.surface_z[k]]),
                                 float(a), float(result.opening[k]), float(result.jaw[k]),
                                 float(result.contact_z[k])))
        if len(chosen) >= config.max_per_object:
            break
    return chosen


def _disc(radius, step):
    """Offsets (M, 2) of a grid of points within a disc (the centre excluded)."""
    k = int(np.ceil(radius / step))
    g = np.arange(-k, k + 1) * step
    x, y = np.meshgrid(g, g)
    keep = (x * x + y * y <= radius * radius + 1e-12) & ((x != 0) | (y != 0))
    return np.stack([x[keep], y[keep]], -1)


def _ticks(size, spacing, minimum):
    """Per-grasp offsets (N, K) spanning ``[-size/2, size/2]``."""
    k = max(minimum, int(np.ceil(np.max(size, initial=0) / spacing)) + 1)
    return np.asarray(size)[:, None] * np.linspace(-0.5, 0.5, k)[None]


def _ticks_between(lo, hi, spacing, minimum):
    """Per-grasp offsets (N, K) spanning ``[lo, hi]`` (empty spans collapse onto ``lo``)."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    k = max(minimum, int(np.ceil(np.max(hi - lo, initial=0) / spacing)) + 1)
    return lo[:, None] + np.maximum(hi - lo, 0)[:, None] * np.linspace(0, 1, k)[None]


def visible_labels(labels, camera, depth, tolerance_m=0.01):
    """The labels whose rectangle lies inside the image and whose centre the camera sees
    (the noise-free depth there is the centre's own), as ``(labels, Grasp2D list)``."""
    h, w = depth.shape
    kept, grasps = [], []
    for label in labels:
        pixels, z = camera.project(np.vstack([label.corners(), label.centre]))
        if np.any(z <= 0) or not np.all(np.isfinite(pixels)):
            continue
        if np.any(pixels[:4] < 0) or np.any(pixels[:4, 0] > w - 1) or np.any(
                pixels[:4, 1] > h - 1):
            continue
        u, v = np.floor(pixels[4] + 0.5).astype(int)
        seen = depth[v, u]
        if not abs(seen - z[4]) <= max(tolerance_m, 0.01 * z[4]):
            continue
        kept.append(label)
        grasps.append(Grasp2D.from_polygon(pixels[:4]))
    return kept, grasps
