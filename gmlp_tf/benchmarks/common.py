"""What every benchmark measures the same way: the machine's matmul rate, memory, the processor."""

import platform
import resource
import time
from typing import Any, Callable

import keras


def matmul_flops_per_second(size: int = 2048, repeats: int = 20, dtype: str = "float32") -> float:
    """FLOP/s of a size x size x size matmul under XLA, as 2 size^3 / time (best of 3)."""
    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=dtype)
    b = tf.random.normal((size, size), dtype=dtype)
    step = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=True)
    return 2.0 * size**3 / best_seconds(lambda: step(a, b), repeats)


def best_seconds(fn: Callable[[], Any], repeats: int = 3, trials: int = 3, warmup: int = 1) -> float:
    """Seconds per call of fn (which returns a tensor): the best of `trials` means over `repeats` calls.

    The best, not the mean: a shared machine only ever makes a run slower.
    """
    for _ in range(warmup):
        _block(fn())
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        _block(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def peak_memory_bytes() -> int:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_memory() -> int:
    """Resets this process's peak resident memory (Linux: VmHWM) to its current value; returns it.

    Then `current_peak_memory() - reset_peak_memory()` is the memory a later step adds at its
    peak, without the compilation that came before.
    """
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # 5 resets the peak RSS (proc(5)).
    return _status_bytes("VmRSS")


def current_peak_memory() -> int:
    """Peak resident memory since the last reset_peak_memory (or since the process started)."""
    return _status_bytes("VmHWM")


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # Reported in kB.
    raise OSError(f"/proc/self/status has no {key}")


def processor_name() -> str:
    """The CPU model as /proc/cpuinfo names it, and the cores this process may use."""
    import os

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def _block(out: Any) -> None:
    """Waits for a result: TensorFlow and JAX run ops asynchronously until a value is read."""
    for tensor in keras.tree.flatten(out):
        if hasattr(tensor, "block_until_ready"):  # JAX
            tensor.block_until_ready()
        elif hasattr(tensor, "numpy"):  # TensorFlow (PyTorch on a CPU is synchronous: no cost)
            tensor.numpy()
        return
