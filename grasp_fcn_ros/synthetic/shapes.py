"""Solids of synthetic scenes, ray cast in their own frame.

Every shape lives in a local frame whose z axis is the table's normal: its footprint is centred
on the origin and it rests on ``z = 0`` (its base). Shapes answer two questions:

- :meth:`Shape.hit`: where does a ray ``o + t d`` first meet the solid (``t``, inf for a miss);
- :meth:`Shape.column`: which heights ``[bottom, top]`` the solid fills above a table point
  (NaN where it is absent), the top-down view that the grasp labels work on.

Analytic shapes (boxes, cylinders, ellipsoids) are convex: a ray meets them in one interval.
Hollow ones (cups, bowls, rings) are the difference of two convex solids. Free-form shapes
(extruded outlines, tubes along curves, straps) are *slabs*: solids that fill one interval of
heights per table point, stored as two height maps on a fine grid and ray marched. All of them
are exact for the poses the generator uses (resting on a face, turned about the vertical).
"""

import cv2
import numpy as np

#: Largest number of (ray, step) samples a slab marches at once.
MARCH_CHUNK = 1 << 21


def _empty(n):
    return np.full(n, np.inf), np.full(n, -np.inf)


def box_interval(o, d, lo, hi):
    """Entry and exit ``t`` of rays against an axis-aligned box ``lo <= p <= hi``.

    :param o: (N, 3) ray origins.
    :param d: (N, 3) ray directions (not necessarily unit).
    :returns: ``(t0, t1)``, each (N,); the ray misses when ``t0 > t1``.
    """
    with np.errstate(divide='ignore', invalid='ignore'):
        inv = 1.0 / d
        ta = (np.asarray(lo) - o) * inv
        tb = (np.asarray(hi) - o) * inv
    t0 = np.fmax.reduce(np.fmin(ta, tb), axis=1)
    t1 = np.fmin.reduce(np.fmax(ta, tb), axis=1)
    return np.nan_to_num(t0, nan=np.inf), np.nan_to_num(t1, nan=-np.inf)


def _quadratic_interval(a, b, c):
    """Where ``a t^2 + b t + c <= 0`` for a >= 0: an interval (a == 0: all t when c <= 0)."""
    t0, t1 = _empty(len(a))
    flat = a <= 1e-18
    inside = flat & (c <= 0)
    t0[inside], t1[inside] = -np.inf, np.inf
    disc = b * b - 4 * a * c
    ok = ~flat & (disc >= 0)
    root = np.sqrt(disc[ok])
    t0[ok] = (-b[ok] - root) / (2 * a[ok])
    t1[ok] = (-b[ok] + root) / (2 * a[ok])
    return t0, t1


def cylinder_interval(o, d, radius, z0, z1, axis=2):
    """Rays against a capped cylinder about a coordinate axis through the origin's other
    coordinates (0, 0), spanning ``z0 <= p[axis] <= z1``."""
    a_axes = [i for i in range(3) if i != axis]
    ox, oy = o[:, a_axes[0]], o[:, a_axes[1]]
    dx, dy = d[:, a_axes[0]], d[:, a_axes[1]]
    t0, t1 = _quadratic_interval(dx * dx + dy * dy, 2 * (ox * dx + oy * dy),
                                 ox * ox + oy * oy - radius * radius)
    lo, hi = np.full(3, -np.inf), np.full(3, np.inf)
    lo[axis], hi[axis] = z0, z1
    s0, s1 = box_interval(o, d, lo, hi)
    return np.maximum(t0, s0), np.minimum(t1, s1)


def ellipsoid_interval(o, d, centre, semi_axes):
    """Rays against an axis-aligned ellipsoid."""
    s = np.asarray(semi_axes, dtype=np.float64)
    oo = (o - np.asarray(centre)) / s
    dd = d / s
    return _quadratic_interval((dd * dd).sum(1), 2 * (oo * dd).sum(1), (oo * oo).sum(1) - 1)


def _hit_of(t0, t1):
    """First non-negative hit of an interval (inf for a miss)."""
    hit = (t0 <= t1) & (t1 >= 0)
    return np.where(hit, np.maximum(t0, 0.0), np.inf)


class Shape:
    """A solid resting on ``z = 0`` of its frame.

    :ivar half_x: half of the footprint's extent along local x, metres.
    :ivar half_y: half of the footprint's extent along local y, metres.
    :ivar height: highest point above the base, metres.
    :ivar flat_top: another object can rest on its top (a flat face at ``height``).
    """

    kind = 'shape'
    flat_top = False

    def hit(self, o, d):
        """First ``t >= 0`` where rays ``o + t d`` (local frame) meet the solid; inf on a miss."""
        raise NotImplementedError

    def column(self, x, y):
        """Bottom and top heights (metres, NaN where empty) of the solid above local points.

        Found by casting vertical rays down from above and up from below; a shape whose
        columns are not one interval would need more (none of the generator's is).
        """
        x = np.asarray(x, np.float64).ravel()
        y = np.asarray(y, np.float64).ravel()
        n = len(x)
        above = self.height + 1.0
        down = self.hit(np.stack([x, y, np.full(n, above)], 1), np.tile([0.0, 0, -1], (n, 1)))
        up = self.hit(np.stack([x, y, np.full(n, -1.0)], 1), np.tile([0.0, 0, 1], (n, 1)))
        top = np.where(np.isfinite(down), above - down, np.nan)
        bottom = np.where(np.isfinite(up), up - 1.0, np.nan)
        return bottom, top

    def footprint_radius(self):
        return float(np.hypot(self.half_x, self.half_y))

    def describe(self):
        """A JSON-able description (kind and dimensions in metres)."""
        return {'kind': self.kind, 'size': [round(2 * self.half_x, 5), round(2 * self.half_y, 5),
                                            round(self.height, 5)]}


class Convex(Shape):
    """A convex solid: one entry-exit interval per ray."""

    def interval(self, o, d):
        raise NotImplementedError

    def hit(self, o, d):
        return _hit_of(*self.interval(o, d))


class Box(Convex):
    """A box lying on a face: ``size = (x, y, z)`` metres."""

    kind = 'box'
    flat_top = True

    def __init__(self, size_x, size_y, size_z):
        self.half_x, self.half_y, self.height = size_x / 2, size_y / 2, float(size_z)

    def interval(self, o, d):
        return box_interval(o, d, (-self.half_x, -self.half_y, 0.0),
                            (self.half_x, self.half_y, self.height))

    def column(self, x, y):
        x, y = np.ravel(x), np.ravel(y)
        inside = (np.abs(x) <= self.half_x) & (np.abs(y) <= self.half_y)
        return np.where(inside, 0.0, np.nan), np.where(inside, self.height, np.nan)


class Cylinder(Convex):
    """A cylinder standing on its end (axis vertical) or lying on its side (axis along x)."""

    def __init__(self, radius, length, lying=False):
        self.radius, self.length, self.lying = float(radius), float(length), bool(lying)
        self.kind = 'cylinder_lying' if lying else 'cylinder'
        self.flat_top = not lying
        if lying:
            self.half_x, self.half_y, self.height = length / 2, radius, 2 * radius
        else:
            self.half_x = self.half_y = radius
            self.height = float(length)

    def interval(self, o, d):
        if self.lying:
            shifted = o - np.array([0.0, 0.0, self.radius])
            return cylinder_interval(shifted, d, self.radius, -self.length / 2,
                                     self.length / 2, axis=0)
        return cylinder_interval(o, d, self.radius, 0.0, self.length, axis=2)

    def column(self, x, y):
        x, y = np.ravel(x), np.ravel(y)
        r = self.radius
        if self.lying:
            half = np.sqrt(np.maximum(r * r - y * y, 0.0))
            inside = (np.abs(x) <= self.length / 2) & (np.abs(y) <= r)
            return np.where(inside, r - half, np.nan), np.where(inside, r + half, np.nan)
        inside = x * x + y * y <= r * r
        return np.where(inside, 0.0, np.nan), np.where(inside, self.length, np.nan)

    def describe(self):
        return {'kind': self.kind, 'radius': round(self.radius, 5),
                'length': round(self.length, 5)}


class Ellipsoid(Convex):
    """An ellipsoid (a sphere when the semi-axes are equal) resting on its lowest point."""

    kind = 'ellipsoid'

    def __init__(self, a, b, c):
        self.semi = np.array([a, b, c], dtype=np.float64)
        self.half_x, self.half_y, self.height = float(a), float(b), 2 * float(c)
        if a == b == c:
            self.kind = 'sphere'

    def interval(self, o, d):
        return ellipsoid_interval(o, d, (0.0, 0.0, self.semi[2]), self.semi)

    def column(self, x, y):
        a, b, c = self.semi
        q = 1.0 - (np.ravel(x) / a) ** 2 - (np.ravel(y) / b) ** 2
        half = c * np.sqrt(np.maximum(q, 0.0))
        return np.where(q >= 0, c - half, np.nan), np.where(q >= 0, c + half, np.nan)

    def describe(self):
        return {'kind': self.kind, 'semi_axes': [round(float(s), 5) for s in self.semi]}


class Cup(Shape):
    """An upright open cylinder with a wall and a bottom: a cup, a can without lid, a jar; with
    ``bottom = 0`` a ring (a roll of tape)."""

    def __init__(self, radius, height, wall, bottom):
        self.radius, self.wall, self.bottom = float(radius), float(wall), float(bottom)
        self.half_x = self.half_y = self.radius
        self.height = float(height)
        self.kind = 'cup' if bottom > 0 else 'ring'

    def hit(self, o, d):
        a0, a1 = cylinder_interval(o, d, self.radius, 0.0, self.height)
        b0, b1 = cylinder_interval(o, d, self.radius - self.wall,
                                   self.bottom if self.bottom > 0 else -1.0, self.height + 1.0)
        return _difference_hit(a0, a1, b0, b1)

    def describe(self):
        return {'kind': self.kind, 'radius': round(self.radius, 5),
                'height': round(self.height, 5), 'wall': round(self.wall, 5),
                'bottom': round(self.bottom, 5)}


class Bowl(Shape):
    """A spherical shell cut flat at its foot and at its rim."""

    kind = 'bowl'

    def __init__(self, radius, height, wall, foot=0.01):
        self.radius, self.wall = float(radius), float(wall)
        self.height = float(height)
        # the sphere's centre, above the base by radius - the cut below it
        cut = min(max(foot, 0.0), 0.5 * self.radius)
        self.centre_z = self.radius - cut
        rim = self.radius if self.height >= self.centre_z else np.sqrt(
            self.radius ** 2 - (self.centre_z - self.height) ** 2)
        self.half_x = self.half_y = float(rim)

    def hit(self, o, d):
        c = (0.0, 0.0, self.centre_z)
        a0, a1 = ellipsoid_interval(o, d, c, [self.radius] * 3)
        s0, s1 = box_interval(o, d, (-np.inf, -np.inf, 0.0), (np.inf, np.inf, self.height))
        inner = self.radius - self.wall
        b0, b1 = ellipsoid_interval(o, d, c, [inner] * 3)
        return _difference_hit(np.maximum(a0, s0), np.minimum(a1, s1), b0, b1)

    def describe(self):
        return {'kind': self.kind, 'radius': round(self.radius, 5),
                'height': round(self.height, 5), 'wall': round(self.wall, 5)}


def _difference_hit(a0, a1, b0, b1):
    """First hit of the solid A minus B, both convex (intervals ``[a0, a1]``, ``[b0, b1]``)."""
    a_empty = a0 > a1
    a0 = np.maximum(a0, 0.0)
    in_b = (b0 <= b1) & (b0 <= a0) & (a0 <= b1)
    # entering A inside B: the first point of A past B, when A goes on beyond B
    t = np.where(in_b, np.where(b1 < a1, b1, np.inf), a0)
    return np.where(a_empty | (a1 < 0), np.inf, t)


class Slab(Shape):
    """A free-form solid that fills one interval ``[bottom, top]`` of heights above each point
    of a fine grid (NaN where absent), centred on the origin.

    :param bottom: (ny, nx) float heights, metres (NaN = no solid).
    :param top: (ny, nx) float heights, metres.
    :param cell: grid spacing, metres.
    """

    kind = 'slab'

    def __init__(self, bottom, top, cell, kind='slab', flat_top=False, info=None):
        self.bottom = np.asarray(bottom, np.float32)
        self.top = np.asarray(top, np.float32)
        self.cell = float(cell)
        self.kind = kind
        self.flat_top = flat_top
        self.info = dict(info or {})
        ny, nx = self.top.shape
        self.half_x, self.half_y = nx * cell / 2, ny * cell / 2
        self.height = float(np.nanmax(self.top))
        self.z_min = float(np.nanmin(self.bottom))
        # empty cells: an interval no ray height can fall in
        self._bottom = np.where(np.isnan(self.bottom), np.inf, self.bottom).astype(np.float32)
        self._top = np.where(np.isnan(self.top), -np.inf, self.top).astype(np.float32)

    def _cells(self, x, y):
        ny, nx = self.top.shape
        i = np.floor((y + self.half_y) / self.cell).astype(np.int64)
        j = np.floor((x + self.half_x) / self.cell).astype(np.int64)
        inside = (i >= 0) & (i < ny) & (j >= 0) & (j < nx)
        return np.clip(i, 0, ny - 1), np.clip(j, 0, nx - 1), inside

    def column(self, x, y):
        x = np.asarray(x, np.float64).ravel()
        y = np.asarray(y, np.float64).ravel()
        i, j, inside = self._cells(x, y)
        bottom = np.where(inside, self.bottom[i, j], np.nan)
        top = np.where(inside, self.top[i, j], np.nan)
        return bottom, top

    def hit(self, o, d):
        n = len(o)
        out = np.full(n, np.inf)
        t0, t1 = box_interval(o, d, (-self.half_x, -self.half_y, self.z_min),
                              (self.half_x, self.half_y, self.height))
        active = np.flatnonzero((t0 <= t1) & (t1 >= 0))
        if active.size == 0:
            return out
        t0 = np.maximum(t0[active], 0.0)
        t1 = t1[active]
        oa, da = o[active], d[active]
        # march each ray in steps of at most a cell in the plane; a step's test covers its
        # whole height range, so thin slabs are not stepped over
        length = (t1 - t0) * np.hypot(da[:, 0], da[:, 1])
        steps = np.maximum(np.ceil(length / self.cell), 1).astype(np.int64)
        order = np.argsort(steps, kind='stable')
        sorted_steps = steps[order]
        start = 0
        while start < len(order):
            # the most rays, in increasing step count, whose samples fit in one chunk
            cost = np.arange(1, len(order) - start + 1) * sorted_steps[start:]
            end = start + max(1, int(np.searchsorted(cost, MARCH_CHUNK, side='right')))
            idx = order[start:end]
            out[active[idx]] = self._march(oa[idx], da[idx], t0[idx], t1[idx], steps[idx],
                                           int(sorted_steps[end - 1]))
            start = end
        return out

    def _march(self, o, d, t0, t1, steps, s_max):
        k = np.arange(s_max, dtype=np.float64)[None, :]
        dt = ((t1 - t0) / steps)[:, None]
        ta = t0[:, None] + k * dt
        tb = ta + dt
        valid = k < steps[:, None]
        tm = 0.5 * (ta + tb)
        x = o[:, 0:1] + tm * d[:, 0:1]
        y = o[:, 1:2] + tm * d[:, 1:2]
        i, j, inside = self._cells(x, y)
        bottom = self._bottom[i, j]
        top = self._top[i, j]
        za = o[:, 2:3] + ta * d[:, 2:3]
        zb = o[:, 2:3] + tb * d[:, 2:3]
        lo, hi = np.minimum(za, zb), np.maximum(za, zb)
        hits = valid & inside & (lo <= top) & (hi >= bottom)
        first = np.argmax(hits, axis=1)
        any_hit = hits[np.arange(len(o)), first]
        rows = np.arange(len(o))
        ta_f, za_f = ta[rows, first], za[rows, first]
        top_f, bottom_f = top[rows, first], bottom[rows, first]
        dz = d[:, 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            through_top = (top_f - o[:, 2]) / dz
            through_bottom = (bottom_f - o[:, 2]) / dz
        t = np.where((za_f >= bottom_f) & (za_f <= top_f), ta_f,
                     np.where(dz < 0, through_top, through_bottom))
        return np.where(any_hit, np.maximum(t, ta_f), np.inf)

    def describe(self):
        out = {'kind': self.kind, 'size': [round(2 * self.half_x, 5), round(2 * self.half_y, 5),
                                           round(self.height, 5)]}
        out.update(self.info)
        return out


def _grid(extent_x, extent_y, cell):
    nx = max(int(np.ceil(extent_x / cell)), 1)
    ny = max(int(np.ceil(extent_y / cell)), 1)
    return nx, ny


def extrusion(outline, height, cell):
    """A prism: a closed outline (N, 2) in metres, centred, extruded upwards by ``height``."""
    outline = np.asarray(outline, np.float64)
    outline = outline - 0.5 * (outline.min(0) + outline.max(0))
    span = outline.max(0) - outline.min(0)
    nx, ny = _grid(span[0] + 2 * cell, span[1] + 2 * cell, cell)
    mask = np.zeros((ny, nx), np.uint8)
    shift = 4
    pts = (outline + [nx * cell / 2, ny * cell / 2]) / cell - 0.5
    cv2.fillPoly(mask, [np.round(pts * (1 << shift)).astype(np.int32)], 1, cv2.LINE_8, shift)
    inside = mask.astype(bool)
    bottom = np.where(inside, 0.0, np.nan)
    top = np.where(inside, float(height), np.nan)
    return Slab(bottom, top, cell, 'extrusion', flat_top=True,
                info={'height': round(float(height), 5)})


def _centreline_distance(path, cell, margin, closed):
    """Distance (metres) of each cell of a grid around a path to the path's polyline."""
    path = np.asarray(path, np.float64)
    path = path - 0.5 * (path.min(0) + path.max(0))
    span = path.max(0) - path.min(0)
    nx, ny = _grid(span[0] + 2 * margin + 2 * cell, span[1] + 2 * margin + 2 * cell, cell)
    canvas = np.full((ny, nx), 255, np.uint8)
    shift = 4
    pts = (path + [nx * cell / 2, ny * cell / 2]) / cell - 0.5
    cv2.polylines(canvas, [np.round(pts * (1 << shift)).astype(np.int32)], closed, 0, 1,
                  cv2.LINE_8, shift)
    distance = cv2.distanceTransform(canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance.astype(np.float64) * cell


def tube(path, radius, cell, closed=False, kind='tube'):
    """A round tube of ``radius`` lying flat along a path (N, 2) in metres: a rod, a cable, a
    loop (``closed``)."""
    distance = _centreline_distance(path, cell, radius, closed)
    inside = distance < radius
    half = np.sqrt(np.maximum(radius * radius - distance * distance, 0.0))
    bottom = np.where(inside, radius - half, np.nan)
    top = np.where(inside, radius + half, np.nan)
    return Slab(bottom, top, cell, kind, info={'radius': round(float(radius), 5)})


def strap(path, width, thickness, cell):
    """A flat strip of ``width`` and ``thickness`` lying along a path (N, 2) in metres."""
    distance = _centreline_distance(path, cell, width / 2, False)
    inside = distance < width / 2
    bottom = np.where(inside, 0.0, np.nan)
    top = np.where(inside, float(thickness), np.nan)
    return Slab(bottom, top, cell, 'strap', info={'width': round(float(width), 5),
                                                 'thickness': round(float(thickness), 5)})
