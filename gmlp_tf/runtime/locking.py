"""One run per output directory: OUTPUT_DIR/run.lock, holding the host, pid and start time of its run.

On a local file system the file is also flock()ed, so the kernel frees it when the process dies
however it dies; a later run finds the dead run's record, warns and takes over. Object stores
(gs://, s3://) have no locks: there the file itself is the lock, and one left by a process of
this host that is gone is taken over; one from another host cannot be checked from here, so the
message says to delete it if that run has ended.

A job releases the locks it took when it returns (released_on_exit), a script when it exits, and
the kernel when the process dies; taking one the process already holds is a no-op.
"""

import atexit
import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Dict, Iterator, Optional

import tensorflow as tf
from absl import logging

LOCK_NAME = "run.lock"
_held: Dict[str, "_Lock"] = {}


def acquire(output_dir: str) -> None:
    """Takes output_dir's lock (creating the directory), or raises naming the run that holds it.

    Raises:
      ValueError: another live run holds the lock.
    """
    key = output_dir if _is_remote(output_dir) else os.path.realpath(output_dir)
    if key in _held:
        return
    try:
        tf.io.gfile.makedirs(output_dir)
    except (OSError, tf.errors.OpError) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "message", str(err))
        raise ValueError(f"output directory {output_dir} is not writable: {reason}") from None
    path = os.path.join(output_dir, LOCK_NAME)
    lock = _ObjectStoreLock(path) if _is_remote(output_dir) else _FileLock(path)
    lock.acquire()
    if not _held:
        atexit.register(release_all)
    _held[key] = lock


def release_all() -> None:
    """Releases every lock this process holds (and deletes their files)."""
    while _held:
        _, lock = _held.popitem()
        lock.release()


def release(output_dir: str) -> None:
    """Releases output_dir's lock (and deletes its file) if this process holds it."""
    lock = _held.pop(output_dir if _is_remote(output_dir) else os.path.realpath(output_dir), None)
    if lock is not None:
        lock.release()


@contextlib.contextmanager
def released_on_exit() -> Iterator[None]:
    """Releases on the way out the locks taken inside, and only those: a job called from Python
    frees its output directory when it returns, as a script does when it exits, while a job that
    runs another inside it (a finetuning demo pretraining its encoder) keeps its own."""
    before = set(_held)
    try:
        yield
    finally:
        for path in [path for path in _held if path not in before]:
            _held.pop(path).release()


def holder_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def describe(record: Optional[dict]) -> str:
    if not record:
        return "a run that has not written its record yet"
    return f"host {record.get('host')}, pid {record.get('pid')}, started {record.get('started')}"


def _in_use(path: str, record: Optional[dict], hint: str = "") -> ValueError:
    return ValueError(f"{os.path.dirname(path)} is in use by another run ({describe(record)}); wait for it to end "
                      f"or use another --output_dir{hint}")


def _parse(text: str) -> Optional[dict]:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # It exists but belongs to someone else.
    return True


class _Lock:
    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class _FileLock(_Lock):
    """flock() on a local file; its content says who holds it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        for _ in range(3):  # A holder may delete the file between our open and our flock: retry.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                record = _parse(os.read(fd, 4096).decode("utf-8", "replace"))
                os.close(fd)
                raise _in_use(self.path, record) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                self.fd = fd
                break
            os.close(fd)
        else:
            raise ValueError(f"could not lock {self.path}: it keeps being replaced")
        previous = _parse(os.read(self.fd, 4096).decode("utf-8", "replace"))
        if previous:
            logging.warning("Taking over %s from a run that is no longer running (%s)", self.path, describe(previous))
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(holder_record()).encode(), 0)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # While still locked: no run sees an empty record of a finished one.
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


class _ObjectStoreLock(_Lock):
    """A lock file on a store without locks (gs://, s3://): the file's presence is the lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.record: Optional[dict] = None

    def acquire(self) -> None:
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path) as f:
                previous = _parse(f.read())
            on_this_host = previous and previous.get("host") == socket.gethostname()
            if not (on_this_host and not _alive(int(previous.get("pid", -1)))):
                raise _in_use(self.path, previous, f"; if that run has ended, delete {self.path}")
            logging.warning("Taking over %s from a run that is no longer running (%s)", self.path, describe(previous))
        self.record = holder_record()
        with tf.io.gfile.GFile(self.path, "w") as f:
            f.write(json.dumps(self.record))

    def release(self) -> None:
        if self.record is None:
            return
        try:
            with tf.io.gfile.GFile(self.path) as f:
                if _parse(f.read()) == self.record:  # Never delete another run's lock.
                    tf.io.gfile.remove(self.path)
        except (OSError, tf.errors.OpError):
            pass
        self.record = None


def _is_remote(path: str) -> bool:
    return "://" in path
