"""The Toeplitz spatial projection's two paths, matmul and FFT: time and peak memory by length.

Each (path, n) runs in a fresh process, so that one path's memory cannot hide in the other's,
and so that each can run on the Keras backend that --backend names (KERAS_BACKEND is read once,
when Keras is imported). On JAX and PyTorch a third column times the FFT path with the gradient
left to autodiff instead of the hand-written one.
"""

import dataclasses
import multiprocessing
import os
from typing import Any, Callable, Dict, List, Sequence

from gmlp_tf.runtime.flags import option

BACKENDS = ("tensorflow", "jax", "torch")


def implementations(backend: str) -> tuple:
    """The columns: the FFT through autodiff only where keras.ops' FFTs are used."""
    return ("matmul", "fft") if backend == "tensorflow" else ("matmul", "fft", "fft_autodiff")


@dataclasses.dataclass
class SpatialBenchmarkSpec:
    """The flags of benchmark_spatial_projection.py."""

    lengths: str = option("128,256,512,1024,2048,4096,8192,16384", "Sequence lengths n to time, comma-separated.")
    channels: int = option(1536, "Channels the projection mixes (gMLP's gate half: d_ffn / 2).")
    batch_size: int = option(1, "Examples per step.")
    jit_compile: bool = option(
        True, "Compile the step with XLA, as Keras fit does on GPUs and TPUs (on a CPU-only machine its default, "
        "jit_compile='auto', leaves XLA off: time that with --nojit_compile). JAX always compiles; PyTorch runs "
        "eagerly, as Keras fit does there by default.")
    causal: bool = option(False, "Time the causal (lower-triangular) W.")
    backend: str = option("tensorflow", f"Keras backend to time: {', '.join(BACKENDS)}.")
    block_layouts: bool = option(
        False, "Instead, time a gMLP block with the FFT projection as built (tokens-first) against the same "
        "block with its gate kept tokens-last from U to V (d_ffn = 2 x --channels, d_model = --channels / 2; "
        "TensorFlow, XLA).")


def _autodiff_convolution(kernel: Any, signal: Any, n: int) -> Any:
    """The FFT convolution of layers/spatial_projection.py with no written gradient (for timing)."""
    from keras import ops

    from gmlp_tf.layers.spatial_projection import _complex_product

    product = _complex_product(ops.rfft(signal, fft_length=2 * n), ops.rfft(kernel))
    return ops.irfft(product, fft_length=2 * n)[..., :n]


def _gradient_step(layer: Any, z: Any, jit_compile: bool) -> Callable[[], Any]:
    """A callable that runs one forward and backward pass of sum(layer(z)^2) on the current backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=jit_compile)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.square(layer(x)))
            return tape.gradient(loss, [x, layer.kernel, layer.bias])

        return lambda: step(z)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(trainable, x):
            out, _ = layer.stateless_call(trainable, [], x)
            return jnp.sum(jnp.square(out))

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        trainable = [v.value for v in layer.trainable_variables]
        return lambda: grad(trainable, z)
    import torch

    x = torch.as_tensor(z).requires_grad_(True)
    sources = [x, layer.kernel.value, layer.bias.value]
    return lambda: torch.autograd.grad(torch.sum(torch.square(layer(x))), sources)


def measure(implementation: str, n: int, channels: int, batch_size: int, jit_compile: bool,
            causal: bool) -> Dict[str, float]:
    """Seconds of one forward and backward pass of SpatialProjection(kind="toeplitz") and peak memory.

    peak_bytes is the resident memory the steps add at their peak over what the process held
    after compiling and running the step once (which holds the input and the weights). Runs in
    the calling process, on its Keras backend; `run` calls it in a fresh one per (path, n).
    """
    import numpy as np

    from gmlp_tf.benchmarks.common import _block, best_seconds, current_peak_memory, reset_peak_memory
    from gmlp_tf.layers import spatial_projection

    if implementation == "fft_autodiff":
        spatial_projection._ops_convolution = _autodiff_convolution  # This process only.
    layer = spatial_projection.SpatialProjection(
        n, kind="toeplitz", causal=causal, implementation=implementation.split("_")[0])
    layer.build((None, n, channels))
    layer.kernel.assign(np.random.default_rng(0).standard_normal(2 * n - 1).astype("float32") / np.sqrt(n))
    z = np.random.default_rng(1).standard_normal((batch_size, n, channels)).astype("float32")
    step = _gradient_step(layer, z, jit_compile)
    _block(step())  # Trace and compile outside the memory figure.
    before = reset_peak_memory()
    repeats = max(1, min(5, 2048 // n))
    seconds = best_seconds(step, repeats=repeats, trials=2 if n >= 8192 else 3, warmup=0)
    return {"seconds": seconds, "peak_bytes": max(0, current_peak_memory() - before)}


def _child(queue: multiprocessing.Queue, args: tuple) -> None:
    try:
        queue.put(measure(*args))
    except Exception as err:  # Reported in the table (e.g. out of memory), not a crash of the run.
        queue.put({"error": f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"})


def measure_in_fresh_process(backend: str, *args: Any) -> Dict[str, float]:
    """measure(*args) in a new process on `backend` (spawned: TensorFlow does not survive fork)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, args))
    previous = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = backend  # The child inherits it and imports Keras with it.
    try:
        process.start()
    finally:
        if previous is None:
            del os.environ["KERAS_BACKEND"]
        else:
            os.environ["KERAS_BACKEND"] = previous
    process.join()
    if process.exitcode != 0 or queue.empty():
        return {"error": f"process exited with {process.exitcode} (out of memory?)"}
    return queue.get()


def run(spec: SpatialBenchmarkSpec) -> List[Dict[str, object]]:
    """Times every path at every length; returns one row per length."""
    try:
        lengths = [int(n) for n in spec.lengths.split(",") if n.strip()]
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated integers, got {spec.lengths!r}") from None
    if not lengths or min(lengths) <= 0 or spec.channels <= 0 or spec.batch_size <= 0:
        raise ValueError("--lengths, --channels and --batch_size must be positive")
    if spec.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}; got {spec.backend!r}")
    if spec.block_layouts:
        return _run_block_layouts(spec, lengths)
    rows = []
    for n in lengths:
        row = {"n": n}
        for implementation in implementations(spec.backend):
            row[implementation] = measure_in_fresh_process(
                spec.backend, implementation, n, spec.channels, spec.batch_size, spec.jit_compile, spec.causal)
        rows.append(row)
        print(format_row(row), flush=True)  # A long run shows its progress.
    return rows


def _run_block_layouts(spec: SpatialBenchmarkSpec, lengths: Sequence[int]) -> List[Dict[str, object]]:
    if spec.backend != "tensorflow" or not spec.jit_compile or spec.causal or spec.batch_size != 1:
        raise ValueError("--block_layouts times TensorFlow under XLA, batch 1, not causal: drop the other flags")
    if spec.channels % 2:
        raise ValueError(f"--block_layouts needs an even --channels, got {spec.channels}")
    from gmlp_tf.benchmarks import block_layout

    rows = []
    for n in lengths:
        figures = block_layout.measure(n, spec.channels // 2, 2 * spec.channels)
        rows.append(dict(n=n, block_layouts=figures))
        print("\n".join(block_layout.report_lines(n, spec.channels // 2, 2 * spec.channels, figures)), flush=True)
    return rows


def format_row(row: Dict[str, object]) -> str:
    cells = [f"{row['n']:>6}"]
    paths = [key for key in row if key != "n"]
    for implementation in paths:
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

    if spec.block_layouts:
        from gmlp_tf.benchmarks import block_layout

        return [line for row in rows for line in block_layout.report_lines(
            row["n"], spec.channels // 2, 2 * spec.channels, row["block_layouts"])]
    compiled = {"tensorflow": "XLA" if spec.jit_compile else "no XLA", "jax": "jax.jit", "torch": "eager"}[spec.backend]
    header = [f"{'n':>6}"] + [f"{path + ': time':>14} {'peak memory':>19}" for path in implementations(spec.backend)]
    return [
        f"Toeplitz spatial projection on {spec.backend}, forward + backward, batch {spec.batch_size}, "
        f"{spec.channels} channels, float32, {compiled}{', causal' if spec.causal else ''}; {processor_name()}",
        " ".join(header) + f" {'matmul / fft':>12}",
        *[format_row(row) for row in rows],
    ]
