"""Depth files: 16-bit PNG/TIFF in millimetres, float TIFF in metres, .npy; clear refusals."""

import json
import os
import re

import cv2
import numpy as np
import pytest

from grasp_fcn_ros.cli import main
from grasp_fcn_ros.core.depth import DepthError, read_depth_image
from grasp_fcn_ros.training.dataset import find_samples, format_rectangles

from scenes import box_on_plane
from synthetic_cornell import box_grasps

#: Millimetres of a small frame, with a 0 (no return) pixel.
MM = np.array([[0, 650, 700], [1234, 65535, 1]], dtype=np.uint16)
METRES = np.array([[0.0, 0.65, 0.70], [1.234, 65.535, 0.001]], dtype=np.float32)


@pytest.mark.parametrize('name', ['frame.png', 'frame.tiff', 'frame.tif', 'frame.pgm'])
def test_16_bit_images_are_millimetres(tmp_path, name):
    path = str(tmp_path / name)
    assert cv2.imwrite(path, MM)
    depth = read_depth_image(path)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, METRES, rtol=1e-6)
    # another unit: tenths of a millimetre
    np.testing.assert_allclose(read_depth_image(path, depth_scale=1e-4), METRES / 10, rtol=1e-6)


def test_float_tiff_is_metres(tmp_path):
    path = str(tmp_path / 'frame.tiff')
    depth = np.array([[0.5, np.nan], [0.0, 1.25]], dtype=np.float32)
    assert cv2.imwrite(path, depth)
    np.testing.assert_array_equal(read_depth_image(path, depth_scale=123.0), depth)


@pytest.mark.parametrize('array,expected', [
    (METRES, METRES), (METRES.astype(np.float64), METRES), (MM, METRES),
    (MM.astype(np.int32), METRES)])
def test_npy_float_is_metres_and_integer_is_units(tmp_path, array, expected):
    path = str(tmp_path / 'frame.npy')
    np.save(path, array)
    np.testing.assert_allclose(read_depth_image(path), expected, rtol=1e-6)


@pytest.mark.parametrize('name,content,message', [
    ('frame.jpg', b'not read', "unknown file type '.jpg'"),
    ('frame', b'', "unknown file type '(none)'"),
    ('frame.png', b'not a png', 'not a valid PNG file'),
    ('frame.npy', b'not numpy', 'cannot read depth image'),
])
def test_unreadable_files_are_refused_by_name(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DepthError, match=re.escape(message)) as error:
        read_depth_image(str(path))
    assert str(path) in str(error.value)


@pytest.mark.parametrize('image,message', [
    (np.zeros((4, 4, 3), np.uint16), r'shape \(4, 4, 3\)'),
    (np.zeros((4, 4), np.uint8), 'uint8 pixels'),
])
def test_colour_and_8_bit_images_are_not_depth(tmp_path, image, message):
    path = str(tmp_path / 'frame.png')
    assert cv2.imwrite(path, image)
    with pytest.raises(DepthError, match=message):
        read_depth_image(path)


def test_dataset_reads_png_millimetre_samples(tmp_path):
    folder = tmp_path / 'data'
    folder.mkdir()
    box = (300, 220, 60, 40)
    cv2.imwrite(str(folder / 'pcd0100d.png'), box_on_plane(box=box, dtype=np.uint16))
    (folder / 'pcd0100cpos.txt').write_text(format_rectangles(
        g.polygon() for g in box_grasps(box)))
    np.save(str(folder / 'pcd0101d.npy'), box_on_plane(box=box))
    (folder / 'pcd0101cpos.txt').write_text(format_rectangles(
        g.polygon() for g in box_grasps(box)))
    samples, skipped = find_samples(str(folder))
    assert [s.name for s in samples] == ['pcd0100', 'pcd0101'] and skipped == 0
    for sample in samples:
        np.testing.assert_allclose(sample.load().depth_m, box_on_plane(box=box), atol=1e-6)


def test_detect_reads_a_png_in_millimetres(tmp_path, random_model_path, capsys):
    path = str(tmp_path / 'frame.png')
    cv2.imwrite(path, box_on_plane(dtype=np.uint16))
    out = str(tmp_path / 'result')
    assert main(['detect', path, '--model', random_model_path, '--device', 'cpu',
                 '--q-threshold', '0', '--output', out]) == 0
    with open(out + '.json') as stream:
        grasps = json.load(stream)['grasps']
    # the table is at 0.70 m, the box top at 0.65 m: read as millimetres, not metres
    assert grasps and all(0.6 < g['position_m'][2] < 0.75 for g in grasps)
    assert all(0.65 <= g['depth_m'] <= 0.70 for g in grasps)
    assert os.path.isfile(out + '.png')


def test_detect_names_a_wrong_file(tmp_path, random_model_path, capsys):
    path = tmp_path / 'frame.jpg'
    path.write_bytes(b'jpeg')
    assert main(['detect', str(path), '--model', random_model_path, '--device', 'cpu']) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "unknown file type '.jpg'" in error
