"""Waiting on an rclpy executor: serve callbacks until a condition holds or time runs out."""

import time


def spin_until(executor, predicate, timeout_s, period_s=0.05):
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` seconds have passed.

    Each wait for work lasts at most ``period_s`` and never beyond the deadline, so with a
    predicate that is never true this returns on time (a pacing wait).

    :param executor: an rclpy executor with the nodes to serve.
    :param predicate: callable without arguments.
    :param timeout_s: longest wait, seconds.
    :param period_s: longest single ``spin_once``, seconds.
    :returns: whether ``predicate()`` held (its value at the deadline on a timeout).
    """
    deadline = time.monotonic() + float(timeout_s)
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bool(predicate())
        executor.spin_once(timeout_sec=min(float(period_s), remaining))
