"""The Toeplitz spatial projection's two paths, matmul and FFT: time and peak memory by length.

Each (path, n) runs in a fresh process, so that one path's memory cannot hide in the other's.
"""

import dataclasses
import multiprocessing
from typing import Dict, List, Sequence

from gmlp_tf.runtime.flags import option

IMPLEMENTATIONS = ("matmul", "fft")


@dataclasses.dataclass
class SpatialBenchmarkSpec:
    """The flags of benchmark_spatial_projection.py."""

    lengths: str = option("128,256,512,1024,2048,4096,8192,16384", "Sequence lengths n to time, comma-separated.")
    channels: int = option(1536, "Channels the projection mixes (gMLP's gate half: d_ffn / 2).")
    batch_size: int = option(1, "Examples per step.")
    jit_compile: bool = option(
        True, "Compile the step with XLA, as Keras fit does on GPUs and TPUs (on a CPU-only machine its default, "
        "jit_compile='auto', leaves XLA off: time that with --nojit_compile).")
    causal: bool = option(False, "Time the causal (lower-triangular) W.")


def measure(implementation: str, n: int, channels: int, batch_size: int, jit_compile: bool,
            causal: bool) -> Dict[str, float]:
    """Seconds of one forward and backward pass of SpatialProjection(kind="toeplitz") and peak memory.

    peak_bytes is the resident memory the steps add at their peak over what the process held
    after compiling and running the step once (which holds the input and the weights). Runs in
    the calling process; `run` calls it in a fresh one per (path, n).
    """
    import numpy as np
    import tensorflow as tf

    from gmlp_tf.benchmarks.common import best_seconds, current_peak_memory, reset_peak_memory
    from gmlp_tf.layers.spatial_projection import SpatialProjection

    layer = SpatialProjection(n, kind="toeplitz", causal=causal, implementation=implementation)
    layer.build((None, n, channels))
    layer.kernel.assign(np.random.default_rng(0).standard_normal(2 * n - 1).astype("float32") / np.sqrt(n))
    z = tf.random.normal((batch_size, n, channels))

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x, layer.kernel, layer.bias])

    step(z)[0].numpy()  # Trace and compile outside the memory figure.
    before = reset_peak_memory()
    repeats = max(1, min(5, 2048 // n))
    seconds = best_seconds(lambda: step(z), repeats=repeats, trials=2 if n >= 8192 else 3, warmup=0)
    return {"seconds": seconds, "peak_bytes": max(0, current_peak_memory() - before)}


def _child(queue: multiprocessing.Queue, args: tuple) -> None:
    try:
        queue.put(measure(*args))
    except Exception as err:  # Reported in the table (e.g. out of memory), not a crash of the run.
        queue.put({"error": f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"})


def measure_in_fresh_process(*args) -> Dict[str, float]:
    """measure(*args) in a new process (spawned: TensorFlow does not survive fork)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, args))
    process.start()
    process.join()
    if process.exitcode != 0 or queue.empty():
        return {"error": f"process exited with {process.exitcode} (out of memory?)"}
    return queue.get()


def run(spec: SpatialBenchmarkSpec) -> List[Dict[str, object]]:
    """Times both paths at every length; returns one row per length."""
    try:
        lengths = [int(n) for n in spec.lengths.split(",") if n.strip()]
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated integers, got {spec.lengths!r}") from None
    if not lengths or min(lengths) <= 0 or spec.channels <= 0 or spec.batch_size <= 0:
        raise ValueError("--lengths, --channels and --batch_size must be positive")
    rows = []
    for n in lengths:
        row = {"n": n}
        for implementation in IMPLEMENTATIONS:
            row[implementation] = measure_in_fresh_process(
                implementation, n, spec.channels, spec.batch_size, spec.jit_compile, spec.causal)
        rows.append(row)
        print(format_row(row), flush=True)  # A long run shows its progress.
    return rows


def format_row(row: Dict[str, object]) -> str:
    cells = [f"{row['n']:>6}"]
    for implementation in IMPLEMENTATIONS:
        figures = row[implementation]
        if "error" in figures:
            cells.append(f"{figures['error'][:34]:>34}")
        else:
            cells.append(f"{figures['seconds'] * 1e3:11.1f} ms {figures['peak_bytes'] / 2**20:9.0f} MiB     ")
    matmul, fft = row["matmul"], row["fft"]
    if "seconds" in matmul and "seconds" in fft:
        cells.append(f"{matmul['seconds'] / fft['seconds']:8.2f}x")
    return " ".join(cells)


def report_lines(rows: Sequence[Dict[str, object]], spec: SpatialBenchmarkSpec) -> List[str]:
    from gmlp_tf.benchmarks.common import processor_name

    return [
        f"Toeplitz spatial projection, forward + backward, batch {spec.batch_size}, {spec.channels} channels, "
        f"float32, {'XLA' if spec.jit_compile else 'no XLA'}{', causal' if spec.causal else ''}; {processor_name()}",
        f"{'n':>6} {'matmul: time':>14} {'peak memory':>19} {'fft: time':>14} {'peak memory':>19} {'speed-up':>8}",
        *[format_row(row) for row in rows],
    ]
