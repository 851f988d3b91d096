"""Statistics that compare depth frames: the table's geometry and the sensor's fingerprints.

Used to measure the real Cornell frames, to set the generator's and the sensor model's
defaults from them, and to draw the real-against-synthetic figures (``scripts/
synthetic_figures.py``).
"""

import numpy as np

from ..core.jaws import fit_support_plane

#: Height band around the fitted table plane that counts as table, metres (Cornell's table
#: deviates from a plane by a few centimetres).
TABLE_BAND_M = 0.04
#: Depth bands of the noise-against-depth statistic, metres.
NOISE_BANDS_M = np.arange(0.3, 2.05, 0.1)


def table_geometry(depth_m, intrinsics):
    """The table's pose as a plane fit sees it, and where the image shows something else.

    :returns: dict: ``tilt_deg`` (angle between the optical axis and the table's normal: 0 is
        fronto-parallel), ``distance_m`` (along the optical axis to the plane), ``height_m``
        (camera above the plane), ``roll_deg`` (the turn of the table's slope about the
        optical axis), ``table_row`` (first row from the top whose valid pixels lie mostly on
        the table), ``off_table`` (share of valid pixels more than :data:`TABLE_BAND_M` below
        or above the plane: background, walls, objects); None when no plane is found.
    """
    plane = fit_support_plane(depth_m, intrinsics, 0.1, 5.0)
    if plane is None:
        return None
    n = plane.normal
    h, w = depth_m.shape
    v, u = np.mgrid[0:h, 0:w]
    valid = np.isfinite(depth_m) & (depth_m > 0)
    points = intrinsics.back_project(u, v, np.where(valid, depth_m, np.nan))
    height = points @ n - plane.offset
    on = valid & (np.abs(height) < TABLE_BAND_M)
    share = on.sum(1) / np.maximum(valid.sum(1), 1)
    rows = np.flatnonzero(share >= 0.5)
    return {
        'tilt_deg': float(np.degrees(np.arccos(min(abs(n[2]), 1.0)))),
        'distance_m': float(abs(plane.offset / n[2])) if abs(n[2]) > 1e-9 else float('inf'),
        'height_m': float(abs(plane.offset)),
        'roll_deg': float(np.degrees(np.arctan2(n[0], -n[1]))),
        'table_row': int(rows[0]) if len(rows) else h,
        'off_table': float(((~on) & valid).sum() / max(valid.sum(), 1)),
    }


def depth_statistics(depth_m, max_depth_m=2.0):
    """Local statistics of a depth frame.

    :param max_depth_m: neighbour differences are taken below this depth (Cornell's files
        reach 2.03 m).
    :returns: dict: ``holes`` (share of invalid pixels), ``dx_mm`` / ``dy_mm`` (differences
        of horizontal / vertical neighbours, millimetres, both valid), ``noise`` (for each of
        :data:`NOISE_BANDS_M`, the standard deviation of the second difference along rows
        over sqrt(6), millimetres: white noise of that sigma gives that value; NaN where the
        band is empty) and ``depth`` (the valid depths, metres).
    """
    d = np.asarray(depth_m, np.float64)
    valid = np.isfinite(d) & (d > 0)
    near = valid & (np.nan_to_num(d) < max_depth_m)
    dx = np.diff(d, axis=1)[near[:, 1:] & near[:, :-1]] * 1e3
    dy = np.diff(d, axis=0)[near[1:] & near[:-1]] * 1e3
    second = d[:, :-2] - 2 * d[:, 1:-1] + d[:, 2:]
    ok = valid[:, :-2] & valid[:, 1:-1] & valid[:, 2:]
    ok &= np.abs(np.nan_to_num(second)) < 0.02  # not across an edge
    centre = d[:, 1:-1][ok]
    second = second[ok]
    noise = np.full(len(NOISE_BANDS_M), np.nan)
    for k, lo in enumerate(NOISE_BANDS_M):
        band = (centre >= lo) & (centre < lo + 0.1)
        if band.sum() > 2000:
            noise[k] = second[band].std() / np.sqrt(6) * 1e3
    return {'holes': float(1 - valid.mean()), 'dx_mm': dx, 'dy_mm': dy, 'noise': noise,
            'depth': d[valid]}
