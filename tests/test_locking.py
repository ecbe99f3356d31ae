"""One run per output directory: a second run is refused, a dead run's lock is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from gmlp_tf.runtime import locking

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = ("import sys, time; from gmlp_tf.runtime import locking; locking.acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)")


def hold_in_another_process(output_dir):
    process = subprocess.Popen([sys.executable, "-c", HOLD, output_dir], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=ROOT))
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.fixture(autouse=True)
def _release():
    yield
    locking.release_all()


def test_second_run_is_refused_naming_the_holder_and_a_dead_ones_lock_is_taken_over(tmp_path, caplog):
    output_dir = str(tmp_path / "run")
    holder = hold_in_another_process(output_dir)
    try:
        with pytest.raises(ValueError) as raised:
            locking.acquire(output_dir)
        message = str(raised.value)
        assert (f"{output_dir} is in use by another run (host {socket.gethostname()}, pid {holder.pid}, "
                "started ") in message
        assert "\n" not in message
    finally:
        holder.send_signal(signal.SIGKILL)  # As a crash would: the record stays, the flock goes.
        holder.wait()
    assert json.load(open(os.path.join(output_dir, locking.LOCK_NAME)))["pid"] == holder.pid
    locking.acquire(output_dir)
    assert f"no longer running (host {socket.gethostname()}, pid {holder.pid}" in caplog.text
    assert json.load(open(os.path.join(output_dir, locking.LOCK_NAME)))["pid"] == os.getpid()
    locking.acquire(output_dir)  # Held already by this process: a rerun in-process is fine.
    locking.release_all()
    assert not os.path.exists(os.path.join(output_dir, locking.LOCK_NAME))


def test_object_store_lock_file(tmp_path, caplog):
    path = str(tmp_path / locking.LOCK_NAME)
    live_elsewhere = {"host": "other-host", "pid": 1, "started": "2026-12-01T00:00:00Z"}
    open(path, "w").write(json.dumps(live_elsewhere))
    with pytest.raises(ValueError, match=r"in use by another run \(host other-host, pid 1, .*if that run has ended, "
                                         r"delete .*run\.lock"):
        locking._ObjectStoreLock(path).acquire()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    open(path, "w").write(json.dumps(dict(live_elsewhere, host=socket.gethostname(), pid=int(dead.stdout))))
    lock = locking._ObjectStoreLock(path)
    lock.acquire()
    assert "no longer running" in caplog.text and json.load(open(path))["pid"] == os.getpid()
    lock.release()
    assert not os.path.exists(path)


def test_a_job_frees_the_directories_it_locked_when_it_returns_and_keeps_its_callers(tmp_path):
    from gmlp_tf.runtime import runner as runtime

    outer_dir, inner_dir = str(tmp_path / "outer"), str(tmp_path / "inner")

    @runtime.releases_locks
    def inner_job():
        locking.acquire(inner_dir)

    @runtime.releases_locks
    def outer_job(fail):
        locking.acquire(outer_dir)
        inner_job()  # E.g. a finetuning demo pretraining its encoder first.
        assert not os.path.exists(os.path.join(inner_dir, locking.LOCK_NAME))
        assert os.path.exists(os.path.join(outer_dir, locking.LOCK_NAME))
        if fail:
            raise ValueError("bad input")

    outer_job(False)
    assert not os.path.exists(os.path.join(outer_dir, locking.LOCK_NAME))
    with pytest.raises(ValueError):
        outer_job(True)
    assert not os.path.exists(os.path.join(outer_dir, locking.LOCK_NAME))
    process = hold_in_another_process(outer_dir)  # Free for another process too.
    process.kill()
    process.wait()
