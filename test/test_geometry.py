import numpy as np
import pytest

from grasp_fcn_ros.core.geometry import (
    CameraIntrinsics,
    CORNELL_INTRINSICS,
    CropTransform,
    GeometryError,
    unit_quaternion,
)


def test_centred_crop_of_cornell_frame():
    t = CropTransform.centred(640, 480, 400, 400)
    assert (t.x0, t.y0, t.size, t.scale) == (120, 40, 400, 1.0)
    np.testing.assert_allclose(t.to_source([0, 0]), [120, 40])
    np.testing.assert_allclose(t.to_network([519, 439]), [399, 399])


@pytest.mark.parametrize('crop,out', [(400, 400), (480, 400), (300, 400), (0, 400)])
def test_crop_mapping_round_trip(crop, out):
    t = CropTransform.centred(640, 480, crop, out, offset_x=7, offset_y=0)
    uv = np.random.default_rng(0).uniform(0, 399, (50, 2))
    np.testing.assert_allclose(t.to_network(t.to_source(uv)), uv, atol=1e-9)
    src = np.random.default_rng(1).uniform(0, 479, (50, 2))
    np.testing.assert_allclose(t.to_source(t.to_network(src)), src, atol=1e-9)


def test_mapping_matches_pixel_centres_of_a_2x_downscale():
    t = CropTransform(x0=10, y0=20, size=800, out_size=400)
    # network pixel 0 covers source pixels 10 and 11: its centre is 10.5
    np.testing.assert_allclose(t.to_source([0, 0]), [10.5, 20.5])
    np.testing.assert_allclose(t.to_source([399, 399]), [10 + 798.5, 20 + 798.5])


def test_affine_agrees_with_to_network():
    t = CropTransform.centred(640, 480, 480, 400, offset_x=20)
    uv = np.array([[130.0, 17.0], [500.0, 400.0]])
    m = t.affine_to_network()
    np.testing.assert_allclose(uv @ m[:, :2].T + m[:, 2], t.to_network(uv))


def test_crop_view_matches_window():
    image = np.arange(480 * 640).reshape(480, 640)
    t = CropTransform.centred(640, 480, 100, 400)
    assert t.crop(image).shape == (100, 100)
    assert t.crop(image)[0, 0] == image[190, 270]


@pytest.mark.parametrize('w,h,crop,ox,oy', [(300, 300, 400, 0, 0), (640, 480, 400, 200, 0),
                                            (640, 480, 400, 0, -41)])
def test_crop_that_does_not_fit_is_rejected(w, h, crop, ox, oy):
    with pytest.raises(GeometryError):
        CropTransform.centred(w, h, crop, 400, ox, oy)


def test_back_project_and_project_by_hand():
    cam = CameraIntrinsics(fx=500.0, fy=400.0, cx=320.0, cy=240.0)
    p = cam.back_project(420.0, 140.0, 2.0)
    np.testing.assert_allclose(p, [100 * 2 / 500, -100 * 2 / 400, 2.0])
    np.testing.assert_allclose(cam.project(p), [420.0, 140.0])


def test_from_k_reads_row_major_matrix():
    cam = CameraIntrinsics.from_k([585, 0, 321, 0, 586, 239, 0, 0, 1], 640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (585, 586, 321, 239,
                                                                       640, 480)


@pytest.mark.parametrize('k', [[0] * 9, [np.nan, 0, 1, 0, 1, 1, 0, 0, 1], [1, 2, 3],
                               [1e-38, 0, 320, 0, 585, 240, 0, 0, 1],
                               [585, 0, 320, 0, 0.5, 240, 0, 0, 1]])
def test_unusable_k_is_rejected(k):
    with pytest.raises(GeometryError):
        CameraIntrinsics.from_k(k, 640, 480)


def test_size_mismatch_is_reported():
    cam = CameraIntrinsics(585, 585, 320, 240, 640, 480)
    cam.validate(640, 480)
    with pytest.raises(GeometryError, match='camera_info is for 640x480'):
        cam.validate(1280, 720)


def test_unit_quaternion_scales_and_picks_w_non_negative():
    np.testing.assert_array_equal(unit_quaternion([0.0, 0.0, 3.0, 4.0]), [0.0, 0.0, 0.6, 0.8])
    np.testing.assert_array_equal(unit_quaternion([0.0, 0.0, 3.0, -4.0]), [0.0, 0.0, -0.6, 0.8])
    np.testing.assert_array_equal(unit_quaternion([-2.0, 0.0, 0.0, 0.0]), [-1.0, 0.0, 0.0, 0.0])


def test_cornell_intrinsics_are_the_kinect_approximation():
    assert CORNELL_INTRINSICS == CameraIntrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)
