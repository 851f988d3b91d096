import numpy as np
import pytest

from grasp_fcn_ros.core.depth import decode_depth, DepthError, inpaint, invalid_mask, normalise


def _encode(pixels, dtype, pad=0, bigendian=False):
    arr = pixels.astype(np.dtype(dtype).newbyteorder('>' if bigendian else '<'))
    rows = arr.view(np.uint8).reshape(arr.shape[0], -1)
    padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    padded[:, :rows.shape[1]] = rows
    return padded.tobytes(), padded.shape[1]


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('pad', [0, 6])
def test_decode_16uc1_millimetres(pad, bigendian):
    mm = np.array([[0, 500, 1000], [1500, 65535, 700]], np.uint16)
    data, step = _encode(mm, np.uint16, pad, bigendian)
    depth = decode_depth(data, 2, 3, '16UC1', step, bigendian, depth_scale=0.001)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, mm.astype(np.float64) / 1000, rtol=1e-6)


def test_decode_mono16_uses_scale():
    mm = np.array([[100, 200]], np.uint16)
    data, step = _encode(mm, np.uint16)
    np.testing.assert_allclose(decode_depth(data, 1, 2, 'mono16', step, depth_scale=0.0001),
                               [[0.01, 0.02]], rtol=1e-6)


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('pad', [0, 4])
def test_decode_32fc1_metres(pad, bigendian):
    m = np.array([[0.5, np.nan, 1.25], [2.0, 0.0, 3.5]], np.float32)
    data, step = _encode(m, np.float32, pad, bigendian)
    depth = decode_depth(bytearray(data), 2, 3, '32FC1', step, bigendian)
    np.testing.assert_array_equal(depth, m)


def test_decode_accepts_missing_padding_after_last_row():
    mm = np.arange(6, dtype=np.uint16).reshape(2, 3)
    data, step = _encode(mm, np.uint16, pad=2)
    trimmed = data[:-2]
    np.testing.assert_allclose(decode_depth(trimmed, 2, 3, '16UC1', step, depth_scale=1.0), mm)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', '8UC1', 'mono8', ''])
def test_decode_rejects_other_encodings(encoding):
    with pytest.raises(DepthError, match='unsupported depth encoding'):
        decode_depth(b'\0' * 12, 2, 2, encoding, 6)


@pytest.mark.parametrize('nbytes,step', [(10, 6), (24, 6), (12, 4), (0, 6)])
def test_decode_rejects_inconsistent_buffers(nbytes, step):
    with pytest.raises(DepthError):
        decode_depth(b'\0' * nbytes, 2, 3, '16UC1', step)


def test_decode_rejects_empty_geometry():
    with pytest.raises(DepthError, match='empty'):
        decode_depth(b'', 0, 3, '16UC1', 6)


def test_invalid_mask_flags_nan_inf_zero_negative_and_range():
    d = np.array([np.nan, np.inf, 0.0, -1.0, 0.05, 0.5, 9.0], np.float32)
    np.testing.assert_array_equal(invalid_mask(d), [1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(invalid_mask(d, 0.1, 5.0), [1, 1, 1, 1, 1, 0, 1])


def test_inpaint_fills_holes_from_neighbours():
    d = np.full((40, 50), 0.8, np.float32)
    d[10:14, 20:25] = np.nan
    d[0, :] = 0.0
    mask = invalid_mask(d)
    filled = inpaint(d, mask)
    assert np.all(np.isfinite(filled))
    np.testing.assert_allclose(filled, 0.8, atol=1e-3)
    np.testing.assert_array_equal(filled[~mask], d[~mask])


def test_inpaint_refuses_all_invalid():
    d = np.zeros((8, 8), np.float32)
    with pytest.raises(DepthError, match='no valid depth'):
        inpaint(d, invalid_mask(d))


def test_normalise_subtracts_mean_and_clips():
    d = np.array([[0.0, 1.0], [2.0, 5.0]], np.float32)
    np.testing.assert_allclose(normalise(d), [[-1.0, -1.0], [0.0, 1.0]])
    assert normalise(d).dtype == np.float32
