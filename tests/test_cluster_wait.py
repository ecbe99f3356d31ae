"""--strategy=multi_worker waiting for its cluster (TF_CONFIG): a malformed TF_CONFIG is one error line;
a worker whose peer never comes says whom it waits for, gives up after --cluster_timeout_s with one
error line, and stops at once on SIGTERM or Ctrl-C while it waits."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf
from local_ports import free_ports

from gmlp_tf.runtime import cluster
from gmlp_tf.runtime.distribution import get_strategy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "run_imagenet.py")
WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}

# Runs a script (argv[1], its flags after it) as `python script ...` would, with a waiting line
# every second instead of every 10 s, and Python's Ctrl-C handler as in a terminal.
DRIVER = """
import runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from gmlp_tf.runtime import cluster
cluster.LOG_INTERVAL_S = 1.0
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def tf_config(cluster_spec, task_type="worker", index=0):
    return json.dumps({"cluster": cluster_spec, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize("value, message", [
    (None, "needs TF_CONFIG"),
    ("  ", "needs TF_CONFIG"),
    ("{'cluster': {}}", "TF_CONFIG is not JSON"),
    ('["127.0.0.1:2222"]', 'TF_CONFIG has no "cluster"'),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG has no "cluster"'),
    (tf_config({"worker": "127.0.0.1:2222"}), 'TF_CONFIG\'s cluster job "worker" must be a list'),
    (tf_config({"worker": ["127.0.0.1:2222", "127.0.0.1"]}), 'TF_CONFIG\'s worker 1 address "127.0.0.1" is not'),
    (tf_config({"worker": ["127.0.0.1:2222", "host:port"]}), "TF_CONFIG's worker 1 address"),
    (tf_config({"worker": [":2222"]}), "TF_CONFIG's worker 0 address"),
    (tf_config(WORKERS, index=2), 'TF_CONFIG\'s "task" {"type": "worker", "index": 2} is not a chief or worker'),
    (tf_config(WORKERS, task_type="chief"), "is not a chief or worker of its cluster \\(worker 0-1\\)"),
    (json.dumps({"cluster": WORKERS}), 'TF_CONFIG\'s "task" {"type": null, "index": null}'),
])
def test_a_missing_or_malformed_tf_config_is_one_error_line_before_any_strategy(monkeypatch, value, message):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", lambda *a, **k: pytest.fail("created"))
    with pytest.raises(ValueError, match=message) as err:
        get_strategy("multi_worker", cluster_timeout_s=5)
    assert "\n" not in str(err.value)


def test_the_peers_are_the_other_chief_and_worker_tasks():
    spec = {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "[::1]:2223"], "ps": ["10.0.0.4:2222"]}
    read = cluster.read_tf_config(tf_config(spec, index="1"))
    assert read.task == cluster.Worker("worker", 1, "[::1]:2223")
    assert [str(peer) for peer in read.peers] == ["chief 0 (10.0.0.1:2222)", "worker 0 (10.0.0.2:2222)"]


def test_join_waits_for_the_peers_listening_meanwhile_then_connects_with_the_handlers_back():
    own, peer = (cluster.Worker("worker", i, f"127.0.0.1:{port}") for i, port in enumerate(free_ports(2)))
    seen = {}

    def connect():
        seen["signals"] = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        return "strategy"

    def peer_comes_up():
        seen["own port answered"] = not cluster.unreachable([own])  # The waiting worker is up for its peers.
        seen["peer"] = socket.create_server(peer.host_port)

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    threading.Timer(1.0, peer_comes_up).start()
    began = time.monotonic()
    try:
        assert cluster.join(cluster.Cluster(own, [peer]), 30, connect) == "strategy"
    finally:
        seen["peer"].close()
    assert 1.0 <= time.monotonic() - began < 10
    assert seen["own port answered"]
    assert seen["signals"] == (signal.SIG_DFL, signal.SIG_DFL)  # A kill or Ctrl-C ends the process at once.
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert cluster.unreachable([own]) == [own]  # Its port is free again for TensorFlow's server.


def test_join_gives_up_naming_the_workers_not_reached_and_the_flag(monkeypatch):
    own, peer, other = (cluster.Worker("worker", i, f"127.0.0.1:{port}") for i, port in enumerate(free_ports(3)))
    with socket.create_server(other.host_port):
        with pytest.raises(cluster.ClusterTimeoutError) as err:
            cluster.join(cluster.Cluster(own, [peer, other]), 1, lambda: pytest.fail("connected"))
    assert str(err.value) == (
        f"the cluster of TF_CONFIG did not come up within 1 s: worker 1 ({peer.address}) not reachable "
        f"(this is worker 0 ({own.address}); start every worker, or raise --cluster_timeout_s)")
    with pytest.raises(ValueError, match="--cluster_timeout_s must be positive, got 0"):
        cluster.join(cluster.Cluster(own, [peer]), 0, lambda: None)


def start_worker(tmp_path, index, timeout_s):
    """This worker of a two-worker cluster on localhost whose other worker never starts; returns
    (process, the other worker's address)."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CONFIG=tf_config({"worker": addresses}, index=index))
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, SCRIPT, "--strategy=multi_worker", f"--cluster_timeout_s={timeout_s}",
         f"--output_dir={tmp_path / 'run'}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, addresses[1 - index]


def test_a_worker_whose_peer_never_comes_says_so_and_gives_up_with_one_error_line(tmp_path):
    began = time.monotonic()
    process, peer = start_worker(tmp_path, index=0, timeout_s=3)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1, err[-3000:]
    assert time.monotonic() - began < 120
    last = err.strip().splitlines()[-1]
    assert last.startswith("run_imagenet.py: error: the cluster of TF_CONFIG did not come up within 3 s: "), last
    assert f"worker 1 ({peer}) not reachable" in last and "--cluster_timeout_s" in last
    assert f"Waiting for the cluster: worker 1 ({peer}) not reachable yet" in err
    assert not os.path.exists(tmp_path / "run")  # Nothing was written.


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_waiting_for_its_peer_stops_at_once_on_sigterm_or_ctrl_c(tmp_path, number):
    process, peer = start_worker(tmp_path, index=1, timeout_s=600)
    stuck = threading.Timer(120, process.kill)  # The test fails rather than hangs.
    stuck.start()
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "Waiting for the cluster" in line:
                break
        assert f"worker 0 ({peer}) not reachable yet" in lines[-1], "".join(lines[-30:])
        time.sleep(1.5)  # Well into the wait.
        process.send_signal(number)
        began = time.monotonic()
        process.communicate(timeout=20)
        assert process.returncode == -number
        assert time.monotonic() - began < 5
    finally:
        stuck.cancel()
        process.kill()
        process.wait()


# A worker that saw its peer up but then never joins it (the peer vanished in that moment): connect()
# blocks, as MultiWorkerMirroredStrategy would, and faulthandler ends the process.
STUCK = """
import socket, sys, time
from gmlp_tf.runtime import cluster
cluster.MIN_JOIN_S = 1.0
own, peer = (cluster.Worker("worker", i, f"127.0.0.1:{port}") for i, port in enumerate(sys.argv[1:]))
with socket.create_server(peer.host_port):
    cluster.join(cluster.Cluster(own, [peer]), 2, lambda: time.sleep(60))
"""


def test_a_worker_stuck_joining_a_peer_seen_up_ends_after_the_timeout():
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", STUCK, *map(str, free_ports(2))], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert time.monotonic() - began < 30
    assert "Timeout" in done.stderr
