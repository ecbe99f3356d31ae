"""Speed and memory figures for benchmark_pretraining.py (never asserted by tests).

Absolute times drift between runs and machines, so the train step's rate is reported as a
fraction of a dense float32 matmul measured in the same process.
"""

import resource
import time

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf import counting
from gmlp_tf.tasks.pretraining import recipe as pretraining


def matmul_flops_per_second(size=2048, repeats=20, dtype=tf.float32):
    """FLOP/s of a size x size x size matmul under XLA, as 2 size^3 / time (best of 3)."""
    a = tf.random.normal((size, size), dtype=dtype)
    b = tf.random.normal((size, size), dtype=dtype)
    step = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=True)
    step(a, b).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            out = step(a, b)
        out.numpy()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2.0 * size**3 / best


def pipeline_examples_per_second(dataset, batch_size, num_batches=50, warmup_batches=5):
    """Examples per second that a tf.data pipeline produces on its own."""
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    return num_batches * batch_size / (time.perf_counter() - start)


def synthetic_batch(config, batch_size, max_seq_length, max_predictions_per_seq, seed=0):
    """One batch of pretraining features with random tokens (for timing the step alone)."""
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(5, config.vocab_size, (batch_size, max_seq_length)).astype("int32"),
        "input_mask": np.ones((batch_size, max_seq_length), "int32"),
        "segment_ids": np.zeros((batch_size, max_seq_length), "int32"),
        "masked_lm_positions": rng.integers(1, max_seq_length - 1, (batch_size, max_predictions_per_seq)).astype("int32"),
        "masked_lm_ids": rng.integers(5, config.vocab_size, (batch_size, max_predictions_per_seq)).astype("int32"),
        "masked_lm_weights": np.ones((batch_size, max_predictions_per_seq), "float32"),
    }


def train_step_seconds(model, batch, steps=10, warmup_steps=3):
    """Median seconds per optimizer step of model.fit on one in-memory batch.

    Steps are timed one by one inside a single fit() call, after warmup steps that absorb
    tracing and compilation; the median resists the odd slow step of a shared machine.
    """
    dataset = tf.data.Dataset.from_tensors(batch).repeat().map(pretraining.split_features)
    marks = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(time.perf_counter())

    model.fit(dataset, steps_per_epoch=warmup_steps + steps, epochs=1, shuffle=False, verbose=0, callbacks=[Clock()])
    intervals = np.diff(marks[warmup_steps - 1 :]) / model.steps_per_execution
    return float(np.median(intervals))


def train_flops_per_example(config, max_seq_length, max_predictions_per_seq):
    """Forward FLOPs x 3 (forward, and backward at twice the forward), the usual estimate."""
    forward = counting.count_flops(config.replace(max_seq_length=max_seq_length), max_predictions_per_seq)
    return 3 * forward


def peak_memory_bytes():
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
