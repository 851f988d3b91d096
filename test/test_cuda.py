"""The CUDA path: ``backend: auto`` on a GPU (fp16 autocast replaying a CUDA graph) against
PyTorch fp32 on the CPU, on the bundled real frames. Skipped where no GPU is present."""

import numpy as np
import pytest
from test_runtime import _compare, FRAMES
import torch

from grasp_fcn_ros.core.backends import create_backend
from grasp_fcn_ros.core.depth import read_depth_image
from grasp_fcn_ros.core.detector import DetectorConfig, GraspDetector
from grasp_fcn_ros.core.geometry import CORNELL_INTRINSICS
from grasp_fcn_ros.resources import default_model_path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@pytest.fixture(scope='module')
def frames():
    return [read_depth_image(path) for path in FRAMES]


@pytest.fixture(scope='module')
def reference():
    return create_backend(default_model_path(), 'torch', 'cpu', 'fp32')


def test_cuda_auto_is_fp16_with_a_graph_and_matches_fp32(reference, frames):
    backend = create_backend(default_model_path(), 'auto', 'auto', 'auto')
    assert backend.device.type == 'cuda' and backend.precision == 'fp16'
    assert backend.plan.cuda_graphs
    _compare(backend, reference, frames, 'fp16')


def test_cuda_fp32_matches_the_cpu(reference, frames):
    backend = create_backend(default_model_path(), 'torch', 'cuda', 'fp32')
    detector = GraspDetector(backend, DetectorConfig())
    inputs = np.stack([detector.detect(depth_m, CORNELL_INTRINSICS).network_input
                       for depth_m in frames])[:, None]
    # cuDNN may run fp32 convolutions in TF32 on the GPU: maps agree to a few thousandths
    np.testing.assert_allclose(backend.predict(inputs), reference.predict(inputs), atol=5e-3)


def test_a_replayed_cuda_graph_answers_each_new_input(reference, frames):
    """The captured graph reads a static input buffer: every frame must be copied into it, so
    alternating frames give each frame's own maps, the same as a run without the graph."""
    graph = create_backend(default_model_path(), 'torch', 'cuda', 'fp16', cuda_graphs=True)
    eager = create_backend(default_model_path(), 'torch', 'cuda', 'fp16', cuda_graphs=False)
    detector = GraspDetector(reference, DetectorConfig())
    inputs = [detector.detect(depth_m, CORNELL_INTRINSICS).network_input[None, None]
              for depth_m in frames]
    assert len(inputs) >= 2
    for x in inputs + inputs[::-1]:
        np.testing.assert_allclose(graph.predict(x), eager.predict(x), atol=1e-3)
    assert graph._graph is not None  # replayed, not re-run eagerly


def test_the_mirrored_view_replays_one_graph_for_both_views(reference, frames):
    """``test_time_mirror`` on the GPU: the frame and its mirror image go through one graph
    captured for a batch of two, and the averaged maps match the CPU's fp32 average."""
    from grasp_fcn_ros.core.ensemble import AveragedBackend

    member = create_backend(default_model_path(), 'auto', 'auto', 'auto')
    mirrored = AveragedBackend([member], mirror=True)
    mirrored.warmup()
    assert tuple(member._static_in.shape)[0] == 2
    _compare(mirrored, AveragedBackend([reference], mirror=True), frames, 'fp16')
