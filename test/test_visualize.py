import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from grasp_fcn_ros.core.backends import create_backend
from grasp_fcn_ros.core.detector import Detection, DetectorConfig, GraspDetector
from grasp_fcn_ros.core.grasp import Grasp2D
from grasp_fcn_ros.core.model import ModelConfig
from grasp_fcn_ros.core.postprocess import GraspMaps, PostprocessConfig
from grasp_fcn_ros.core.projection import project_grasp
from grasp_fcn_ros.training.dataset import find_samples
from grasp_fcn_ros.training.evaluate import EvaluationResult, ImageResult
from grasp_fcn_ros.visualize import (
    _best_match,
    detection_to_json,
    save_detection_figure,
    save_evaluation_figures,
)

from scenes import box_on_plane, INTRINSICS
from synthetic_cornell import write_dataset

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _check_png(path, min_width=300, min_height=300):
    assert os.path.isfile(path)
    with open(path, 'rb') as stream:
        assert stream.read(8) == PNG_SIGNATURE
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height
    assert width <= 4000 and height <= 4000
    assert image.std() > 5, 'the figure is blank'
    return image


@pytest.fixture(scope='module')
def detection(random_model_path):
    """A real detection of a box on a table by a random-weight network, every peak kept."""
    post = PostprocessConfig(q_threshold=0.0, max_grasps=3)
    detector = GraspDetector(create_backend(random_model_path, 'torch', 'cpu'),
                             DetectorConfig(postprocess=post))
    depth = box_on_plane()
    return depth, detector.detect(depth, INTRINSICS)


@pytest.fixture
def known_detection(detection):
    """The real detection with grasps of known values (random weights give Q = 0 maps)."""
    depth, det = detection
    quality = det.maps.quality.copy()
    quality[150:170, 200:220] = 0.9
    maps = GraspMaps(quality, det.maps.angle, det.maps.width_px)
    grasps = [Grasp2D(330.0, 240.0, np.deg2rad(20), 60.0, 0.9),
              Grasp2D(250.0, 200.0, np.deg2rad(-70), 40.0, 0.5),
              Grasp2D(5.0, 5.0, 0.0, 30.0, 0.3)]
    poses = [project_grasp(g, depth, INTRINSICS) for g in grasps[:2]]
    return depth, Detection(grasps, poses, maps, det.transform, det.network_input,
                            det.timings_ms)


def test_detection_figure_on_depth_only(tmp_path, detection):
    depth, det = detection
    assert det.grasps_2d, 'a zero threshold keeps at least one peak'
    path = tmp_path / 'sub' / 'figure.png'
    assert save_detection_figure(str(path), depth, det, title='box') == str(path)
    image = _check_png(path, 800, 600)
    assert image.shape[1] > image.shape[0], 'a 2x2 figure is wider than tall'


def test_detection_figure_on_colour_with_known_grasps(tmp_path, known_detection):
    depth, det = known_detection
    color = np.dstack([(depth - 0.6) * 2000] * 3).clip(0, 255).astype(np.uint8)
    path = tmp_path / 'figure.png'
    save_detection_figure(str(path), depth, det, color=color)
    _check_png(path, 800, 600)


def test_detection_figure_without_grasps(tmp_path, detection):
    depth, det = detection
    empty = Detection([], [], det.maps, det.transform, det.network_input, {})
    path = tmp_path / 'empty.png'
    save_detection_figure(str(path), depth, empty, color=np.zeros(depth.shape, np.uint8))
    _check_png(path, 800, 600)


def test_detection_json_is_plain_and_complete(detection, known_detection):
    _, det = detection
    data = json.loads(json.dumps(detection_to_json(det)))
    assert set(data) == {'grasps', 'timings_ms', 'crop'}
    assert set(data['timings_ms']) == {'preprocess', 'inference', 'postprocess', 'projection'}
    assert data['crop'] == {'x0': 120, 'y0': 40, 'size_px': 400, 'network_px': 400}
    assert len(data['grasps']) == len(det.grasps_2d)

    _, det = known_detection
    data = json.loads(json.dumps(detection_to_json(det)))
    first, second, third = data['grasps']
    base = {'rank', 'u', 'v', 'angle_deg', 'width_px', 'quality'}
    full = base | {'position_m', 'quaternion_xyzw', 'width_m', 'depth_m'}
    assert set(first) == full and set(second) == full
    assert set(third) == base, 'a grasp without a 3-D pose has no 3-D fields'
    assert (first['u'], first['v'], first['rank']) == (330.0, 240.0, 1)
    assert first['angle_deg'] == pytest.approx(20.0)
    assert first['width_px'] == pytest.approx(60.0)
    assert first['quality'] == pytest.approx(0.9)
    assert first['depth_m'] == pytest.approx(0.65, abs=1e-6)
    assert first['width_m'] == pytest.approx(60.0 * 0.65 / 585.0, rel=1e-4)
    assert np.linalg.norm(first['quaternion_xyzw']) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(first['position_m'],
                               INTRINSICS.back_project(330.0, 240.0, 0.65), atol=1e-5)


def test_evaluation_figures_split_right_and_wrong(tmp_path):
    truth = write_dataset(str(tmp_path / 'data'), count=4, defects=False)
    samples, _ = find_samples(str(tmp_path / 'data'))
    per_image = []
    for i, sample in enumerate(samples):
        good = truth[sample.name][0]
        wrong = Grasp2D(good.u + 80, good.v, good.angle + 1.2, 20.0)
        predictions = [[good], [wrong], [good], []][i]
        correct = i % 2 == 0
        per_image.append(ImageResult(sample.name, predictions, {0.25: correct}, [correct]))
    result = EvaluationResult(len(per_image), {0.25: 0.5}, {1: 0.5}, per_image)

    written = save_evaluation_figures(str(tmp_path / 'fig'), samples, result)
    names = sorted(os.listdir(tmp_path / 'fig'))
    assert written == 4 == len(names)
    assert names == ['pcd0100_correct.png', 'pcd0101_wrong.png', 'pcd0102_correct.png',
                     'pcd0103_wrong.png']
    for name in names:
        _check_png(tmp_path / 'fig' / name, 300, 300)

    assert save_evaluation_figures(str(tmp_path / 'few'), samples, result, limit=3) == 3
    assert sorted(os.listdir(tmp_path / 'few')) == ['pcd0100_correct.png',
                                                    'pcd0101_wrong.png', 'pcd0103_wrong.png']


def test_visualize_leaves_matplotlib_global_state_alone(tmp_path, detection):
    """Importing the module loads no matplotlib; drawing neither loads pyplot nor picks a
    process-wide backend (run in a fresh interpreter so other tests cannot interfere)."""
    script = (
        'import sys\n'
        'import numpy as np\n'
        'import grasp_fcn_ros.visualize as vis\n'
        'assert "matplotlib" not in sys.modules\n'
        'from grasp_fcn_ros.core.grasp import Grasp2D\n'
        'truth = [Grasp2D(40.0, 30.0, 0.2, 20.0)]\n'
        'class S:\n'
        '    name = "s"; depth_m = np.ones((60, 80), np.float32); grasps = truth\n'
        '    def load(self): return self\n'
        '    def load_color(self): return None\n'
        'class R:\n'
        '    name = "s"; predictions = truth; correct_top1 = {0.25: True}\n'
        'class E:\n'
        '    per_image = [R()]\n'
        'assert vis.save_evaluation_figures(sys.argv[1], [S()], E()) == 1\n'
        'assert "matplotlib.pyplot" not in sys.modules\n')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, MPLBACKEND='')
    done = subprocess.run([sys.executable, '-c', script, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _check_png(tmp_path / 's_correct.png', 300, 300)


def test_closest_truth_follows_the_metric_with_the_callers_thresholds():
    predicted = Grasp2D(100.0, 100.0, 0.0, 40.0)
    turned = Grasp2D(100.0, 100.0, np.deg2rad(40.0), 40.0)  # IoU 0.55, 40 degrees off
    shifted = Grasp2D(120.0, 100.0, 0.0, 40.0)  # IoU 400 / 1200, same angle
    truths = [turned, shifted]
    # 30 degrees: only the shifted rectangle is a match, though its IoU is smaller
    iou, angle = _best_match(predicted, truths, 0.25, np.deg2rad(30.0))
    assert (iou, angle) == (pytest.approx(1 / 3), pytest.approx(0.0, abs=1e-9))
    # 50 degrees: both match, the larger IoU wins
    iou, angle = _best_match(predicted, truths, 0.25, np.deg2rad(50.0))
    assert (iou, angle) == (pytest.approx(0.552187, abs=1e-5), pytest.approx(40.0))
    # IoU above 0.6: neither matches, the larger IoU is the closest
    assert _best_match(predicted, truths, 0.6, np.deg2rad(30.0))[1] == pytest.approx(40.0)
    assert _best_match(predicted, [], 0.25, np.deg2rad(30.0)) is None


def test_detection_figure_draws_the_candidates_the_jaw_check_refused(tmp_path, monkeypatch):
    from grasp_fcn_ros import visualize

    drawn = []
    monkeypatch.setattr(visualize, 'draw_grasp',
                        lambda ax, grasp, colour, **kwargs: drawn.append((grasp.u, colour)))
    grasp, refused = Grasp2D(300.0, 240.0, 0.0, 40.0), Grasp2D(200.0, 240.0, 0.0, 40.0)
    class ZeroMaps:
        config = ModelConfig()

        def predict(self, batch):
            return np.zeros((len(batch), 4, 400, 400), np.float32)

    detection = GraspDetector(ZeroMaps(), DetectorConfig()).detect(box_on_plane())
    detection.grasps_2d, detection.rejected = [grasp], [refused]
    visualize.save_detection_figure(str(tmp_path / 'figure.png'), box_on_plane(), detection)
    assert drawn == [(200.0, visualize.REJECTED_COLOUR), (300.0, visualize.BEST_COLOUR)]
