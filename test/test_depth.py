import cv2
import numpy as np
import pytest

from grasp_fcn_ros.core.depth import (
    decode_depth,
    DepthError,
    encode_depth,
    inpaint,
    invalid_mask,
    median,
    normalise,
    percentile,
    read_depth_image,
)


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


def test_invalid_mask_range_path_agrees_with_the_full_test():
    # with 0 < min and a finite max only the two range comparisons run
    d = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 0.1, 0.0999, 5.0, 5.0001,
                  1.0], np.float32)
    np.testing.assert_array_equal(invalid_mask(d, 0.1, 5.0),
                                  [1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0])
    rng = np.random.default_rng(3)
    d = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -2.0, 0.05, 0.7, 6.0, 1.3],
                            np.float32), (64, 64))
    full = ~(np.isfinite(d) & (d > 0) & (d >= 0.1) & (d <= 5.0))
    np.testing.assert_array_equal(invalid_mask(d, 0.1, 5.0), full)
    # bounds that float32 rounds to 0 and inf: zero and infinity stay invalid
    d = np.array([0.0, np.inf, 1.0], np.float32)
    np.testing.assert_array_equal(invalid_mask(d, 1e-300, 1e300), [1, 1, 0])


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_median_and_percentile_equal_numpys(dtype):
    rng = np.random.default_rng(0)
    for n in list(range(1, 12)) + [25, 200, 401]:
        values = rng.normal(1.0, 0.3, n).astype(dtype)
        values[::3] = np.round(values[::3], 1)  # ties
        got = median(values)
        assert got == np.median(values) and got.dtype == np.median(values).dtype
        for q in (0.0, 5.0, 25.0, 50.0, 62.5, 90.0, 100.0):
            got, expected = percentile(values, q), np.percentile(values, q)
            assert got == expected and got.dtype == expected.dtype
    with pytest.raises(ValueError):
        median(np.zeros(0))
    with pytest.raises(ValueError):
        percentile(np.zeros(0), 50.0)


def test_inpaint_continues_a_ramp_across_a_hole():
    # depth rising 5 mm per column, 0.60 m to 0.895 m; a 10x20 px hole of NaN and zeros
    ramp = np.tile((0.6 + 0.005 * np.arange(60)).astype(np.float32), (40, 1))
    d = ramp.copy()
    d[15:25, 20:40] = np.nan
    d[18:22, 25:35] = 0.0
    mask = invalid_mask(d)
    filled = inpaint(d, mask)
    # the hole spans 0.70..0.795 m: a fill with any one value would be 5 cm off somewhere
    np.testing.assert_allclose(filled[mask], ramp[mask], atol=1e-3)
    np.testing.assert_array_equal(filled[~mask], d[~mask])


def test_inpaint_refuses_all_invalid():
    d = np.zeros((8, 8), np.float32)
    with pytest.raises(DepthError, match='no valid depth'):
        inpaint(d, invalid_mask(d))


def test_encode_16uc1_has_one_rule_for_depths_it_cannot_hold():
    depth = np.array([[0.6504, 1.2, 65.535, 65.536],
                      [np.nan, np.inf, -np.inf, 0.0],
                      [-0.5, 0.0004, 0.0005, 2e9]])
    pixels = encode_depth(depth, '16UC1', 0.001)
    assert pixels.dtype == np.dtype('<u2') and pixels.flags.c_contiguous
    np.testing.assert_array_equal(pixels, [[650, 1200, 65535, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    # every 0 decodes to an invalid pixel, every other value to its depth
    decoded = decode_depth(pixels.tobytes(), 3, 4, '16UC1', 8)
    np.testing.assert_array_equal(invalid_mask(decoded),
                                  [[0, 0, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(decoded[0, :3], [0.650, 1.2, 65.535], rtol=1e-7)


def test_encode_32fc1_keeps_metres_and_special_values():
    depth = np.array([[0.6504, np.nan, np.inf, 0.0]])
    pixels = encode_depth(depth, '32FC1')
    assert pixels.dtype == np.dtype('<f4')
    np.testing.assert_array_equal(pixels, depth.astype(np.float32))
    np.testing.assert_array_equal(decode_depth(pixels.tobytes(), 1, 4, '32FC1', 16), pixels)


def test_encode_refuses_unknown_encodings_and_shapes():
    with pytest.raises(DepthError, match='rgb8'):
        encode_depth(np.ones((2, 2)), 'rgb8')
    with pytest.raises(DepthError, match='2-D'):
        encode_depth(np.ones(4), '16UC1')


def test_read_depth_image_reads_float_tiff_metres(tmp_path):
    depth = np.array([[0.65, np.nan], [0.0, 1.25]], np.float32)
    path = str(tmp_path / 'pcd0001d.tiff')
    assert cv2.imwrite(path, depth)
    np.testing.assert_array_equal(read_depth_image(path), depth)
    assert read_depth_image(path).dtype == np.float32
    (tmp_path / 'broken.tiff').write_bytes(b'not an image')
    with pytest.raises(ValueError, match='cannot read depth image'):
        read_depth_image(str(tmp_path / 'broken.tiff'))


def test_normalise_subtracts_mean_and_clips():
    d = np.array([[0.0, 1.0], [2.0, 5.0]], np.float32)
    np.testing.assert_allclose(normalise(d), [[-1.0, -1.0], [0.0, 1.0]])
    assert normalise(d).dtype == np.float32
