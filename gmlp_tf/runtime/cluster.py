"""Joining the workers of a multi_worker cluster (TF_CONFIG): bounded, reported and stoppable.

Creating MultiWorkerMirroredStrategy blocks inside TensorFlow's C++ until every worker of the
cluster has joined, holding Python's global lock (no Python thread runs meanwhile, a Ctrl-C is only
noted for later) and with TensorFlow's preemption notifier catching SIGTERM: a worker whose peer
never comes would wait there forever, silent, stopped only by SIGKILL. So `join` waits first, in
Python, until every peer is up:
  - this worker listens on its own port of TF_CONFIG (and answers nothing but the connect), so its
    peers see it as up while it waits for them;
  - every PROBE_INTERVAL_S it tries a short TCP connect to each peer's address; every
    LOG_INTERVAL_S it logs the peers not up yet, e.g.
    "Waiting for the cluster: worker 1 (127.0.0.1:12345) not reachable yet";
  - past timeout_s it raises ClusterTimeoutError, one line naming the workers not reached and
    --cluster_timeout_s (a script prints it as "<script>: error: ..." and exits with status 1);
  - SIGTERM and SIGINT (Ctrl-C) have their default actions until the strategy is made: the process
    ends at once. The handlers found before are put back afterwards, over the SIGTERM catcher that
    TensorFlow's preemption notifier sets meanwhile (nothing here reads its notices; it would make
    the workers ignore SIGTERM while they train).
Then the strategy is made and one collective run, which every worker reaches within about a
probe interval of the others. Should a peer vanish in that moment, faulthandler ends the process
(exit status 1, with a stack dump) once the time left of timeout_s, at least MIN_JOIN_S, has passed.
`read_tf_config` checks TF_CONFIG first: a malformed one is one ValueError naming it.
"""

import concurrent.futures
import contextlib
import dataclasses
import faulthandler
import json
import select
import signal
import socket
import threading
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from absl import logging

# Seconds between two "Waiting for the cluster" lines (a test may lower it before the wait).
LOG_INTERVAL_S = 10.0
# Seconds between two probes of the peers while waiting.
PROBE_INTERVAL_S = 0.5
# Seconds a TCP connect to a peer may take before the peer counts as not reachable.
PROBE_TIMEOUT_S = 1.0
# Seconds the strategy at least gets to form once every peer was seen up.
MIN_JOIN_S = 60.0
# The jobs of a cluster whose tasks all take part in MultiWorkerMirroredStrategy's collectives.
COLLECTIVE_JOBS = ("chief", "worker")
TIMEOUT_FLAG = "--cluster_timeout_s"
_EXAMPLE = '{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}'
Result = TypeVar("Result")


class ClusterTimeoutError(RuntimeError):
    """Some workers of the cluster were not up within --cluster_timeout_s."""


@dataclasses.dataclass(frozen=True)
class Worker:
    """A task of the cluster: its job ("chief" or "worker"), index and "host:port" address."""

    job: str
    index: int
    address: str

    @property
    def host_port(self) -> Tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)

    def __str__(self) -> str:
        return f"{self.job} {self.index} ({self.address})"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """TF_CONFIG read: this process's task and the other tasks of the collectives (its peers)."""

    task: Worker
    peers: List[Worker]


def read_tf_config(text: Optional[str]) -> Cluster:
    """The cluster of TF_CONFIG's text (os.environ.get("TF_CONFIG")).

    Raises:
      ValueError: one line naming TF_CONFIG, when it is unset (TensorFlow would then silently train
        on this host alone), not JSON, has no "cluster", an address without host:port, or a task
        whose type and index are not a chief or worker of the cluster.
    """
    if not text or not text.strip():
        raise ValueError(f"--strategy=multi_worker needs TF_CONFIG, the cluster and this worker's task, set on "
                         f"every worker (e.g. TF_CONFIG='{_EXAMPLE}'); without it TensorFlow trains on this host alone")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not JSON ({err}): expected e.g. {_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f'TF_CONFIG has no "cluster" (a dict of job name to a list of "host:port" addresses), '
                         f"e.g. {_EXAMPLE}")
    workers = [_worker(job, index, address) for job, addresses in cluster.items()
               for index, address in enumerate(_addresses(job, addresses))]
    task = config.get("task")
    task = task if isinstance(task, dict) else {}
    kind, index = task.get("type"), task.get("index")
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    own = [w for w in workers if w.job == kind and w.index == index and w.job in COLLECTIVE_JOBS]
    if not own:
        jobs = ", ".join(f"{job} 0-{len(cluster[job]) - 1}" for job in COLLECTIVE_JOBS if job in cluster)
        raise ValueError(f'TF_CONFIG\'s "task" {{"type": {json.dumps(kind)}, "index": {json.dumps(index)}}} is not '
                         f"a chief or worker of its cluster ({jobs or 'which has neither'})")
    peers = [w for w in workers if w.job in COLLECTIVE_JOBS and w != own[0]]
    return Cluster(task=own[0], peers=peers)


def _addresses(job: str, addresses: object) -> List[object]:
    if not isinstance(addresses, list) or not addresses:
        raise ValueError(f'TF_CONFIG\'s cluster job "{job}" must be a list of "host:port" addresses, '
                         f"got {json.dumps(addresses)}")
    return addresses


def _worker(job: str, index: int, address: object) -> Worker:
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"TF_CONFIG's {job} {index} address {json.dumps(address)} is not host:port")
    return Worker(job, index, address)


def join(cluster: Cluster, timeout_s: float, connect: Callable[[], Result]) -> Result:
    """connect() (which makes the strategy) once every peer is up; see the module docstring.

    Raises:
      ClusterTimeoutError: some peers were not up within timeout_s.
      ValueError: timeout_s is not positive, or this worker's port is taken on this host.
    """
    if not timeout_s > 0:
        raise ValueError(f"{TIMEOUT_FLAG} must be positive, got {timeout_s}")
    deadline = time.monotonic() + timeout_s
    with _default_signal_actions():
        wait_for_peers(cluster, timeout_s)
        # A C thread's timer: it fires even while TensorFlow holds Python's lock (it replaces any
        # other faulthandler timer of the process meanwhile).
        faulthandler.dump_traceback_later(max(deadline - time.monotonic(), MIN_JOIN_S), exit=True)
        try:
            return connect()
        finally:
            faulthandler.cancel_dump_traceback_later()


def wait_for_peers(cluster: Cluster, timeout_s: float) -> None:
    """Returns once every peer answers a TCP connect, listening meanwhile on this worker's port."""
    start = time.monotonic()
    next_line = start + LOG_INTERVAL_S
    missing = unreachable(cluster.peers)
    if not missing:
        return
    with _listening(cluster.task) as listener:
        while missing:
            now = time.monotonic()
            if now - start >= timeout_s:
                raise ClusterTimeoutError(
                    f"the cluster of TF_CONFIG did not come up within {timeout_s:g} s: {_named(missing, None)} not "
                    f"reachable (this is {cluster.task}; start every worker, or raise {TIMEOUT_FLAG})")
            if now >= next_line:
                next_line = now + LOG_INTERVAL_S
                logging.warning("Waiting for the cluster: %s not reachable yet (%.0f s of %s=%g)", _named(missing),
                                now - start, TIMEOUT_FLAG, timeout_s)
            _answer_probes(listener, min(now + PROBE_INTERVAL_S, start + timeout_s))
            missing = unreachable(cluster.peers)


def unreachable(peers: Sequence[Worker], timeout_s: float = PROBE_TIMEOUT_S) -> List[Worker]:
    """The peers nobody answers a TCP connect at (within timeout_s), probed in parallel."""
    if not peers:
        return []
    with concurrent.futures.ThreadPoolExecutor(min(len(peers), 32)) as pool:
        answers = list(pool.map(lambda peer: _answers(peer, timeout_s), peers))
    return [peer for peer, answer in zip(peers, answers) if not answer]


def _answers(peer: Worker, timeout_s: float) -> bool:
    try:
        with socket.create_connection(peer.host_port, timeout=timeout_s):
            return True
    except OSError:
        return False


def _named(workers: Sequence[Worker], most: Optional[int] = 8) -> str:
    names = ", ".join(str(w) for w in workers[:most])
    return names + (f" and {len(workers) - most} more" if most is not None and len(workers) > most else "")


@contextlib.contextmanager
def _listening(task: Worker) -> Iterator[socket.socket]:
    """A socket listening on this worker's port, as TensorFlow's server will (on every interface)."""
    port = task.host_port[1]
    try:
        if socket.has_dualstack_ipv6():
            listener = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        else:
            listener = socket.create_server(("", port))
    except OSError as err:
        raise ValueError(f"this worker's port {port} (TF_CONFIG's {task}) is taken on this host: {err.strerror}")
    with listener:
        listener.setblocking(False)
        yield listener


def _answer_probes(listener: socket.socket, until: float) -> None:
    """Accepts and closes the peers' probes until time.monotonic() reaches `until`."""
    while (left := until - time.monotonic()) > 0:
        ready, _, _ = select.select([listener], [], [], left)
        if ready:
            with contextlib.suppress(OSError):  # The prober may be gone already.
                listener.accept()[0].close()


@contextlib.contextmanager
def _default_signal_actions() -> Iterator[None]:
    """SIGTERM and SIGINT end the process at once in the block (in the main thread only, where
    Python sets handlers); the handlers found are put back after, those ignored stay ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    found = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    changed = {number: handler for number, handler in found.items() if handler not in (signal.SIG_IGN, None)}
    for number in changed:
        signal.signal(number, signal.SIG_DFL)
    try:
        yield
    finally:
        for number, handler in changed.items():
            signal.signal(number, handler)
