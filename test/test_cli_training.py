"""`grasp-fcn train` and `grasp-fcn eval` end to end on a generated Cornell-layout dataset."""

import json
import os

import pytest

from grasp_fcn_ros.cli import main
from grasp_fcn_ros.core.model import load_model

from synthetic_cornell import write_dataset


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    dataset = str(root / 'cornell')
    write_dataset(dataset, count=3, defects=False)
    run = str(root / 'run')
    assert main(['train', '--dataset', dataset, '--output', run, '--epochs', '1',
                 '--batch-size', '2', '--device', 'cpu']) == 0
    return dataset, run


def test_train_writes_checkpoints_and_log(trained):
    _, run = trained
    assert {'best.pt', 'last.pt', 'log.csv', 'summary.json'} <= set(os.listdir(run))


def test_train_records_the_scale_of_its_data(trained):
    # the generated frames: a table at 0.70 m (most of every crop) seen with fx = 585 px in a
    # 400 px crop of a 400 px network input
    _, run = trained
    model, _ = load_model(os.path.join(run, 'best.pt'))
    assert model.config.metres_per_pixel == pytest.approx(0.70 / 585.0, rel=1e-6)


def test_train_fits_the_width_calibration_on_its_training_images(trained):
    from grasp_fcn_ros.training.evaluate import WIDTH_SCALES

    _, run = trained
    summary = json.load(open(os.path.join(run, 'summary.json')))
    for name in ('best', 'last'):
        model, meta = load_model(os.path.join(run, f'{name}.pt'))
        assert model.config.width_scale == summary['width_scale'][name]
        assert model.config.width_scale in WIDTH_SCALES
        assert 'fitted on the 3 training images' in meta['width_scale_source']


def test_eval_zoom_compares_metric_and_pixel_crops(trained, tmp_path, capsys):
    dataset, run = trained
    plot = str(tmp_path / 'scale.png')
    out = str(tmp_path / 'scale.json')
    assert main(['eval', '--dataset', dataset, '--model', os.path.join(run, 'best.pt'),
                 '--device', 'cpu', '--zoom', '0.9,1.5', '--plot', plot, '--json', out]) == 0
    with open(out) as stream:
        rows = json.load(stream)
    assert [(r['zoom'], r['mode']) for r in rows] == [
        (0.9, 'pixels'), (0.9, 'metric'), (1.5, 'pixels'), (1.5, 'metric')]
    # the metric crop grows with the zoom (1.5 x 400 px at zoom 1.5); the pixel crop does not
    # (clamped to the 432 px high image at zoom 0.9)
    crops = {(r['zoom'], r['mode']): r['crop_px'] for r in rows}
    assert crops[(1.5, 'pixels')] == 400 and crops[(0.9, 'pixels')] == 400
    assert crops[(1.5, 'metric')] == pytest.approx(600, abs=2)
    assert crops[(0.9, 'metric')] == pytest.approx(360, abs=2)
    assert os.path.getsize(plot) > 0
    assert 'metric' in capsys.readouterr().out


def test_eval_prints_the_table_and_writes_json_and_figures(trained, tmp_path, capsys):
    dataset, run = trained
    out = tmp_path / 'eval.json'
    assert main(['eval', '--dataset', dataset, '--model', os.path.join(run, 'best.pt'),
                 '--device', 'cpu', '--json', str(out), '--figures', str(tmp_path / 'fig')]) == 0
    printed = capsys.readouterr().out
    assert 'top-1 accuracy' in printed and '0.40' in printed
    result = json.loads(out.read_text())
    assert result['images'] == 3
    assert list(result['accuracy']) == ['0.25', '0.30', '0.35', '0.40']
    assert list(result['top_n']) == ['1', '2', '3', '4', '5']
    values = list(result['accuracy'].values()) + list(result['top_n'].values())
    assert all(0.0 <= v <= 1.0 for v in values)
    figures = os.listdir(tmp_path / 'fig')
    assert len(figures) == 3 and all(f.endswith(('_correct.png', '_wrong.png')) for f in figures)


def test_eval_of_one_fold_scores_its_held_out_images(trained, tmp_path, capsys):
    dataset, run = trained
    out = tmp_path / 'fold.json'
    assert main(['eval', '--dataset', dataset, '--model', os.path.join(run, 'best.pt'),
                 '--device', 'cpu', '--folds', '3', '--fold', '2', '--json', str(out)]) == 0
    assert 'fold 2 of 3 (image-wise, seed 0), held-out images: 1' in capsys.readouterr().out
    assert json.loads(out.read_text())['images'] == 1
    with pytest.raises(SystemExit):
        main(['eval', '--dataset', dataset, '--model', os.path.join(run, 'best.pt'),
              '--folds', '3', '--fold', '3'])


def test_eval_averages_models_and_the_mirrored_view(trained, tmp_path, capsys):
    dataset, run = trained
    model = os.path.join(run, 'best.pt')
    base = ['eval', '--dataset', dataset, '--model', model, '--device', 'cpu', '--backend',
            'torch', '--precision', 'fp32', '--json']
    assert main(base + [str(tmp_path / 'one.json')]) == 0
    # the same model twice averages to its own maps: the same scores
    assert main(base + [str(tmp_path / 'two.json'), '--ensemble', model]) == 0
    assert 'mean of 2 model(s) on the input: 2 passes' in capsys.readouterr().err
    assert (json.loads((tmp_path / 'two.json').read_text())
            == json.loads((tmp_path / 'one.json').read_text()))
    assert main(base + [str(tmp_path / 'mirror.json'), '--mirror']) == 0
    assert 'on the input and its mirror image: 2 passes' in capsys.readouterr().err
    assert json.loads((tmp_path / 'mirror.json').read_text())['images'] == 3
