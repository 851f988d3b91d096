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


# --- camera model: P for rectified images, K and D for raw ones -------------------------------

K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
#: A rectified camera matrix that differs from K in every entry.
P = [580.0, 0.0, 310.0, 0.0, 0.0, 590.0, 250.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def brown_conrady(x, y, d):
    """Normalised (x, y) distorted by plumb_bob / rational_polynomial coefficients d."""
    k1, k2, p1, p2, k3, k4, k5, k6 = (list(d) + [0.0] * 8)[:8]
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3) / (1 + k4 * r2 + k5 * r2 ** 2
                                                            + k6 * r2 ** 3)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def equidistant(x, y, d):
    """Normalised (x, y) distorted by the equidistant (fisheye) coefficients k1..k4."""
    k1, k2, k3, k4 = d
    r = np.hypot(x, y)
    theta = np.arctan(r)
    theta_d = theta * (1 + k1 * theta ** 2 + k2 * theta ** 4 + k3 * theta ** 6
                       + k4 * theta ** 8)
    return x * theta_d / r, y * theta_d / r


def raw_pixel(point, distort, d):
    """Pixel of a camera-frame point in the raw image of K with distortion d, by hand."""
    x_d, y_d = distort(point[0] / point[2], point[1] / point[2], d)
    return np.array([500.0 * x_d + 320.0, 510.0 * y_d + 240.0])


def test_rectified_image_back_projects_through_p():
    cam = CameraIntrinsics.from_calibration(K, [0.1, 0.0, 0.0, 0.0, 0.0], 'plumb_bob', P,
                                            640, 480, rectified=True)
    point = cam.back_project(410.0, 190.0, 2.0)
    # x = (u - cx') z / fx', y = (v - cy') z / fy' with P's values; D does not apply
    np.testing.assert_allclose(point, [(410 - 310) * 2.0 / 580, (190 - 250) * 2.0 / 590, 2.0],
                               rtol=1e-12)
    np.testing.assert_allclose(point, [0.3448275862068966, -0.2033898305084746, 2.0])
    np.testing.assert_allclose(cam.project(point), [410.0, 190.0])
    assert not cam.distorted and (cam.width, cam.height) == (640, 480)


@pytest.mark.parametrize('p', [[0.0] * 12, None])
def test_rectified_image_with_zero_p_falls_back_to_k(p):
    cam = CameraIntrinsics.from_calibration(K, [], '', p, rectified=True)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 510.0, 320.0, 240.0)
    np.testing.assert_allclose(cam.back_project(420.0, 138.0, 2.0),
                               [(420 - 320) * 2.0 / 500, (138 - 240) * 2.0 / 510, 2.0])


@pytest.mark.parametrize('model,d', [
    ('plumb_bob', [-0.2, 0.0, 0.0, 0.0, 0.0]),
    ('plumb_bob', [-0.25, 0.08, 0.001, -0.002, -0.01]),
    ('rational_polynomial', [0.3, -0.1, 0.0005, 0.001, 0.01, 0.5, -0.05, 0.02]),
])
def test_raw_image_undistorts_brown_conrady(model, d):
    cam = CameraIntrinsics.from_calibration(K, d, model, P, 640, 480, rectified=False)
    point = np.array([0.3, -0.2, 1.5])
    pixel = raw_pixel(point, brown_conrady, d)
    if d[1:] == [0.0] * 4:  # k1 only: x_d = x (1 + k1 r^2), numbers written out
        np.testing.assert_allclose(pixel, [418.84444444444444, 172.78577777777778])
    np.testing.assert_allclose(cam.back_project(pixel[0], pixel[1], 1.5), point, atol=1e-6)
    np.testing.assert_allclose(cam.project(point), pixel, atol=1e-6)


def test_raw_image_undistorts_equidistant():
    d = [0.1, -0.05, 0.01, -0.002]
    cam = CameraIntrinsics.from_calibration(K, d, 'equidistant', P, 640, 480, rectified=False)
    points = np.array([[0.3, -0.2, 1.5], [-0.6, 0.45, 0.9], [0.0, 0.0, 2.0]])
    pixels = np.array([raw_pixel(p, equidistant, d) if p[0] or p[1] else [320.0, 240.0]
                       for p in points])
    np.testing.assert_allclose(cam.back_project(pixels[:, 0], pixels[:, 1], points[:, 2]),
                               points, atol=1e-6)
    np.testing.assert_allclose(cam.project(points), pixels, atol=1e-6)


def test_raw_image_without_distortion_uses_k():
    for d in ([], [0.0] * 5):
        cam = CameraIntrinsics.from_calibration(K, d, 'plumb_bob', P, rectified=False)
        assert not cam.distorted
        np.testing.assert_allclose(cam.back_project(420.0, 138.0, 2.0),
                                   [(420 - 320) * 2.0 / 500, (138 - 240) * 2.0 / 510, 2.0])


def test_pixel_the_model_cannot_invert_back_projects_to_nan():
    # theta_d = theta (1 - 0.4 theta^2 + ...) peaks near 0.6: farther pixels have no ray
    cam = CameraIntrinsics(500.0, 500.0, 320.0, 240.0, 0, 0, 'equidistant',
                           (-0.4, 0.1, 0.01, -0.002))
    points = cam.back_project([330.0, 1000.0], [240.0, 240.0], 1.0)
    assert np.all(np.isfinite(points[0])) and np.all(np.isnan(points[1, :2]))


def test_unknown_distortion_model_with_non_zero_d_is_rejected():
    with pytest.raises(GeometryError, match="unknown distortion model 'kannala_brandt'"):
        CameraIntrinsics.from_calibration(K, [0.1, 0.0, 0.0, 0.0], 'kannala_brandt',
                                          rectified=False)
    with pytest.raises(GeometryError, match="unknown distortion model ''"):
        CameraIntrinsics.from_calibration(K, [0.1, 0.0, 0.0, 0.0, 0.0], '', rectified=False)
    with pytest.raises(GeometryError, match='takes 4 coefficients, got 5'):
        CameraIntrinsics.from_calibration(K, [0.1] * 5, 'equidistant', rectified=False)
    with pytest.raises(GeometryError, match='got 3'):
        CameraIntrinsics.from_calibration(K, [0.1] * 3, 'plumb_bob', rectified=False)
    # all-zero D is no distortion whatever the name; a rectified image does not use D
    CameraIntrinsics.from_calibration(K, [0.0] * 4, 'kannala_brandt', rectified=False)
    CameraIntrinsics.from_calibration(K, [0.1] * 4, 'kannala_brandt', P, rectified=True)


@pytest.mark.parametrize('p', [[np.nan] + [0.0] * 11, [0.5, 0, 320, 0, 0, 500, 240, 0, 0, 0, 1, 0],
                               [1.0] * 11])
def test_unusable_p_is_rejected(p):
    with pytest.raises(GeometryError):
        CameraIntrinsics.from_calibration(K, [], '', p, 640, 480, rectified=True)


def test_unit_quaternion_scales_and_picks_w_non_negative():
    np.testing.assert_array_equal(unit_quaternion([0.0, 0.0, 3.0, 4.0]), [0.0, 0.0, 0.6, 0.8])
    np.testing.assert_array_equal(unit_quaternion([0.0, 0.0, 3.0, -4.0]), [0.0, 0.0, -0.6, 0.8])
    np.testing.assert_array_equal(unit_quaternion([-2.0, 0.0, 0.0, 0.0]), [-1.0, 0.0, 0.0, 0.0])


def test_cornell_intrinsics_are_the_kinect_approximation():
    assert CORNELL_INTRINSICS == CameraIntrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)
