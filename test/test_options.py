import io

from grasp_fcn_ros.options import LOG_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_into_a_log_updates_rarely():
    log = io.StringIO()
    bar = progress_bar(log)(range(500), desc='work')
    assert bar.mininterval == LOG_INTERVAL_S
    assert sum(1 for _ in bar) == 500
    bar.close()
    # the opening and the closing update, none per item in between
    assert log.getvalue().count('\r') <= 3
    assert 'work: 100%' in log.getvalue()


def test_progress_bar_on_a_terminal_redraws_as_tqdm_does():
    terminal = _Terminal()
    bar = progress_bar(terminal)(total=3, desc='work')
    assert bar.mininterval < 1.0
    bar.update(3)
    bar.close()
    assert 'work: 100%' in terminal.getvalue()
