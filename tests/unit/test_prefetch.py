"""The bounded background producer: order, the bound, errors at the right poll, a clean stop."""

import threading
import time

import pytest

from slm.kb.prefetch import DONE, NOT_READY, Prefetcher


def test_results_in_order_and_thread_gone_after():
    with Prefetcher(range(50), lambda i: i * i, ahead=4) as p:
        assert list(p) == [i * i for i in range(50)]
        assert p.poll() is DONE
    assert not [t for t in threading.enumerate() if t.name == "slm-prefetch"]


def test_producer_stays_within_the_bound():
    started: list[int] = []

    def work(i):
        started.append(i)
        return i

    with Prefetcher(range(100), work, ahead=3) as p:
        time.sleep(0.5)  # nobody polls: 3 results queued, a 4th made and waiting to be put
        assert len(started) <= 3 + 1
        assert p.poll() == 0
        time.sleep(0.3)
        assert len(started) <= 1 + 3 + 1


def test_ahead_zero_runs_in_the_callers_thread():
    threads = []
    with Prefetcher(range(3), lambda i: threads.append(threading.get_ident()) or i, ahead=0) as p:
        assert list(p) == [0, 1, 2]
    assert set(threads) == {threading.get_ident()}
    assert not [t for t in threading.enumerate() if t.name == "slm-prefetch"]


def test_not_ready_when_the_producer_is_behind():
    gate = threading.Event()

    def work(i):
        gate.wait(5)
        return i

    with Prefetcher(range(2), work, ahead=2) as p:
        assert p.poll(wait=False) is NOT_READY
        gate.set()
        assert p.poll() == 0 and p.poll() == 1 and p.poll() is DONE


def test_an_error_in_work_is_raised_at_its_poll():
    def work(i):
        if i == 2:
            raise ValueError("bad item 2")
        return i

    with Prefetcher(range(5), work, ahead=2) as p:
        assert p.poll() == 0 and p.poll() == 1
        with pytest.raises(ValueError, match="bad item 2"):
            p.poll()
        assert p.poll() is DONE


def test_close_midway_stops_the_thread():
    seen = []

    def work(i):
        seen.append(i)
        return i

    p = Prefetcher(range(10_000), work, ahead=2)
    assert p.poll() == 0
    p.close()
    assert not [t for t in threading.enumerate() if t.name == "slm-prefetch"]
    assert len(seen) < 10
    assert p.poll() is DONE


def test_busy_seconds_count_the_work():
    with Prefetcher(range(3), lambda i: time.sleep(0.05) or i, ahead=2) as p:
        list(p)
    assert 0.14 <= p.busy_s < 1.0
