"""Speed and memory figures of pretraining: what benchmark_pretraining.py runs (never asserted by tests).

Absolute times drift between runs and machines, so the train step's rate is reported as a
fraction of a dense float32 matmul measured in the same process.
"""

import dataclasses
import time
from typing import Any, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf import counting, tokenization
from gmlp_tf.benchmarks import bert_peer
from gmlp_tf.benchmarks.common import matmul_flops_per_second, peak_memory_bytes, processor_name
from gmlp_tf.config import GMLPConfig
from gmlp_tf.presets import get_preset_config
from gmlp_tf.runtime import checks
from gmlp_tf.runtime.flags import option, shared
from gmlp_tf.runtime.optimization import create_optimizer
from gmlp_tf.tasks.pretraining import demo_data
from gmlp_tf.tasks.pretraining import recipe as pretraining
from gmlp_tf.tasks.pretraining.data import make_pretraining_dataset
from gmlp_tf.tasks.pretraining.sources import TextFilesSource


def pipeline_examples_per_second(dataset: tf.data.Dataset, batch_size: int, examples: int = 2 * 10_000,
                                 warmup_batches: int = 5) -> float:
    """Examples per second that a tf.data pipeline produces on its own, over at least `examples`.

    The window must span whole passes of the data: a repeated pipeline stalls once per pass while
    it reopens its files, and the demo corpus's pass (about 10,600 examples) is the size of the
    training shuffle buffer. Over 50 batches the figure mostly said where the stall fell: 1,800-9,200
    examples/s for the same pipelines, which agree within 20% over 400 batches.
    """
    iterator = iter(dataset)
    for _ in range(warmup_batches):  # The first batch waits for the shuffle buffer to fill.
        next(iterator)
    num_batches = -(-examples // batch_size)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    return num_batches * batch_size / (time.perf_counter() - start)


def synthetic_batch(
    config: GMLPConfig, batch_size: int, max_seq_length: int, max_predictions_per_seq: int, seed: int = 0
) -> Dict[str, np.ndarray]:
    """One batch of pretraining features with random tokens (for timing the step alone)."""
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(5, config.vocab_size, (batch_size, max_seq_length)).astype("int32"),
        "input_mask": np.ones((batch_size, max_seq_length), "int32"),
        "segment_ids": np.zeros((batch_size, max_seq_length), "int32"),
        "masked_lm_positions": rng.integers(
            1, max_seq_length - 1, (batch_size, max_predictions_per_seq)).astype("int32"),
        "masked_lm_ids": rng.integers(5, config.vocab_size, (batch_size, max_predictions_per_seq)).astype("int32"),
        "masked_lm_weights": np.ones((batch_size, max_predictions_per_seq), "float32"),
    }


def train_step_seconds(model: keras.Model, batch: Tuple[Any, ...], steps: int = 10, warmup_steps: int = 3) -> float:
    """Median seconds per optimizer step of model.fit on one in-memory batch (inputs, labels, weights).

    Steps are timed one by one inside a single fit() call, after warmup steps that absorb
    tracing and compilation; the median resists the odd slow step of a shared machine.
    """
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    marks = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
            marks.append(time.perf_counter())

    model.fit(dataset, steps_per_epoch=warmup_steps + steps, epochs=1, shuffle=False, verbose=0, callbacks=[Clock()])
    intervals = np.diff(marks[warmup_steps - 1 :]) / model.steps_per_execution
    return float(np.median(intervals))


def train_flops_per_example(config: GMLPConfig, max_seq_length: int, max_predictions_per_seq: int) -> int:
    """Forward FLOPs x 3 (forward, and backward at twice the forward), the usual estimate."""
    forward = counting.count_flops(config.replace(max_seq_length=max_seq_length), max_predictions_per_seq)
    return 3 * forward


@dataclasses.dataclass
class BenchmarkSpec:
    """The flags of benchmark_pretraining.py."""

    preset: str = option("gmlp_36l", "Model preset (the base width of Tables 3 and 4 by default).")
    num_layers: int = option(4, "Override the preset's depth (0 keeps it); per-layer cost is what matters.")
    batch_size: int = option(32, "Global batch size.")
    max_seq_length: int = option(128, "Tokens per example.")
    max_predictions_per_seq: int = option(20, "Masked positions per example.")
    steps: int = option(10, "Timed train steps.")
    vocab_file: Optional[str] = option(None, "SentencePiece model for the pipeline (default: the demo vocabulary).")
    input_file: Optional[str] = option(None, "Text files for the pipeline (default: the demo corpus).")
    jit_compile: bool = option(True, "Compile the train steps with XLA (Keras' default turns it off on CPUs).")
    compare_bert: bool = option(True, "Also time keras-hub's BERT masked LM on the same batch (needs keras-hub: "
                                      "pip install \".[bench]\").")
    bert_num_heads: int = option(8, "Attention heads of the BERT peer (same depth, d_model and vocabulary).")
    bert_intermediate_dim: int = option(2048, "FFN width of the BERT peer.")
    precision: str = shared("precision")
    steps_per_execution: int = shared("steps_per_execution")


def run(spec: BenchmarkSpec) -> Dict[str, float]:
    """Measures the input pipeline, the train step and a same-run matmul; returns the figures."""
    checks.check_positive(batch_size=spec.batch_size, max_seq_length=spec.max_seq_length,
                           max_predictions_per_seq=spec.max_predictions_per_seq, steps=spec.steps,
                           steps_per_execution=spec.steps_per_execution, bert_num_heads=spec.bert_num_heads,
                           bert_intermediate_dim=spec.bert_intermediate_dim)
    checks.check_non_negative(num_layers=spec.num_layers)
    config = get_preset_config(spec.preset)
    if spec.num_layers:
        config = config.replace(num_layers=spec.num_layers)
    checks.check_max_seq_length(spec.max_seq_length, config)
    # A --vocab_file must fit the config, as everywhere else; checked before the demo corpus is fetched.
    # The demo vocabulary (8,000 pieces) times the pipeline of any preset: the timed step's tokens are
    # synthetic ones of the config's vocab_size.
    if spec.vocab_file:
        sp_model = tokenization.load_model_vocab(spec.vocab_file, config.vocab_size)
    if spec.input_file:
        source = TextFilesSource(spec.input_file)
    else:
        corpus = demo_data.fetch_demo_corpus()
        source = TextFilesSource(list(corpus.train_files), corpus.blank_line_documents)
    if not spec.vocab_file:
        sp_model = tokenization.load_sp_model(demo_data.demo_vocab())
    keras.mixed_precision.set_global_policy(spec.precision)
    b, n, p = spec.batch_size, spec.max_seq_length, spec.max_predictions_per_seq
    # Built first, so that bad input fails before the minute of timing.
    pipelines = {example_format: make_pretraining_dataset(
        source, is_training=True, sp_model=sp_model, max_seq_length=n, max_predictions_per_seq=p, batch_size=b, seed=1,
        example_format=example_format) for example_format in ("packed", "segment_pair")}
    matmul = matmul_flops_per_second()
    pipeline_rate = pipeline_examples_per_second(pipelines["packed"], b)
    pair_pipeline_rate = pipeline_examples_per_second(pipelines["segment_pair"], b)
    setup = pretraining.PretrainingRecipe(n, p, b, 1e-4, 10_000, 100)
    model = pretraining.build_pretraining_model(config, setup, steps_per_execution=spec.steps_per_execution,
                                                jit_compile=spec.jit_compile)
    batch = synthetic_batch(config, b, n, p)
    seconds = train_step_seconds(model, pretraining.split_features(batch), spec.steps)
    figures = {"num_layers": config.num_layers, "d_model": config.d_model, "d_ffn": config.d_ffn,
               "pipeline_examples_per_second": pipeline_rate, "pair_pipeline_examples_per_second": pair_pipeline_rate,
               "step_seconds": seconds,
               "step_flops_per_second": train_flops_per_example(config, n, p) * b / seconds,
               "matmul_flops_per_second": matmul, "peak_memory_bytes": peak_memory_bytes()}
    if spec.compare_bert and bert_peer.keras_hub_available():
        figures.update(bert_figures(config, spec, batch))
    return figures


def bert_figures(config: GMLPConfig, spec: BenchmarkSpec, batch: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Step time and FLOP/s of keras-hub's BERT (same depth, width, vocabulary, optimizer, batch)."""
    b, n, p = spec.batch_size, spec.max_seq_length, spec.max_predictions_per_seq
    model = bert_peer.build_bert_masked_lm(config.vocab_size, config.num_layers, spec.bert_num_heads, config.d_model,
                                           spec.bert_intermediate_dim, n, p, dropout=config.hidden_dropout_prob)
    model.compile(optimizer=create_optimizer(1e-4, 10_000, 100),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=spec.steps_per_execution, jit_compile=spec.jit_compile)
    data = (bert_peer.bert_batch(batch), batch["masked_lm_ids"], batch["masked_lm_weights"])
    seconds = train_step_seconds(model, data, spec.steps)
    forward = bert_peer.bert_flops_per_example(config.num_layers, config.d_model, spec.bert_intermediate_dim, n, p,
                                               config.vocab_size)
    return {"bert_step_seconds": seconds, "bert_step_flops_per_second": 3 * forward * b / seconds}


def report_lines(figures: Dict[str, float], spec: BenchmarkSpec) -> List[str]:
    """The printed figures, with the targets they are read against."""
    step_rate = spec.batch_size / figures["step_seconds"]
    step_flops, matmul = figures["step_flops_per_second"], figures["matmul_flops_per_second"]
    pipeline = figures["pipeline_examples_per_second"]
    return [
        f"model: {spec.preset} with {figures['num_layers']} layers, d_model {figures['d_model']}, d_ffn "
        f"{figures['d_ffn']}, seq {spec.max_seq_length}, batch {spec.batch_size}, {spec.precision}",
        f"input pipeline alone:       {pipeline:10.1f} examples/s (packed examples)",
        f"  segment pairs:            {figures['pair_pipeline_examples_per_second']:10.1f} examples/s "
        f"({figures['pair_pipeline_examples_per_second'] / pipeline:.2f}x the packed rate)",
        f"train step consumes:        {step_rate:10.1f} examples/s ({step_rate * spec.max_seq_length:.0f} tokens/s, "
        f"{figures['step_seconds'] * 1000:.1f} ms/step)",
        f"pipeline / step:            {pipeline / step_rate:10.1f}x   (target >= 5x)",
        f"train step achieves:        {step_flops / 1e9:10.1f} GFLOP/s (3 x forward FLOPs)",
        f"float32 matmul, same run:   {matmul / 1e9:10.1f} GFLOP/s (2048^3, XLA; {processor_name()})",
        f"step / matmul:              {100 * step_flops / matmul:10.1f}%  (target >= 70% at base width)",
        f"peak memory (RSS):          {figures['peak_memory_bytes'] / 2**30:10.2f} GiB",
        *bert_lines(figures, spec),
    ]


def bert_lines(figures: Dict[str, float], spec: BenchmarkSpec) -> List[str]:
    """The keras-hub BERT peer's figures and the ratio of the two utilisations."""
    if "bert_step_seconds" not in figures:
        return ["keras-hub BERT:             not timed (--nocompare_bert, or keras-hub is not installed: "
                "pip install \".[bench]\")"] if spec.compare_bert else []
    matmul = figures["matmul_flops_per_second"]
    tokens = spec.batch_size * spec.max_seq_length
    gmlp_share = figures["step_flops_per_second"] / matmul
    bert_share = figures["bert_step_flops_per_second"] / matmul
    return [
        f"keras-hub BERT, same batch: {figures['num_layers']} layers, {spec.bert_num_heads} heads, intermediate "
        f"{spec.bert_intermediate_dim}",
        f"  train step:               {tokens / figures['bert_step_seconds']:10.0f} tokens/s "
        f"({figures['bert_step_seconds'] * 1000:.1f} ms/step)",
        f"  achieves:                 {figures['bert_step_flops_per_second'] / 1e9:10.1f} GFLOP/s "
        f"({100 * bert_share:.1f}% of the matmul)",
        f"gMLP / BERT utilisation:    {gmlp_share / bert_share:10.2f}x   (target >= 1.0x)",
    ]
