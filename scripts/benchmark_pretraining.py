"""Prints pretraining speed figures: input pipeline, train step, its FLOP/s beside a matmul's, memory.

  python scripts/benchmark_pretraining.py                      # base width (d 512, d_ffn 3072), seq 128
  python scripts/benchmark_pretraining.py --preset=gmlp_demo --num_layers=0 --batch_size=32

Figures, not a test: the targets (pipeline >= 5x what the step consumes; step >= 50% of the
same-run matmul rate at base width) are for reading, and the README records a run.
"""

from absl import app, flags

from gmlp_tf.runtime import flags as common_flags

common_flags.define_distribution_flags()
flags.DEFINE_string("preset", "gmlp_36l", "Model preset (the base width of Tables 3 and 4 by default).")
flags.DEFINE_integer("num_layers", 4, "Override the preset's depth (0 keeps it); per-layer cost is what matters.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per example.")
flags.DEFINE_integer("steps", 10, "Timed train steps.")
flags.DEFINE_string("vocab_file", None, "SentencePiece model for the pipeline (default: the demo vocabulary).")
flags.DEFINE_string("input_file", None, "Text files for the pipeline (default: the demo corpus).")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    common_flags.run_main("benchmark_pretraining.py", benchmark)


def benchmark():
    import keras

    from gmlp_tf import tokenization
    from gmlp_tf.tasks.pretraining import benchmark as benchmarking
    from gmlp_tf.tasks.pretraining import demo_data as demo_corpus
    from gmlp_tf.tasks.pretraining import recipe as pretraining
    from gmlp_tf.tasks.pretraining.data import TextFilesSource, make_pretraining_dataset
    from gmlp_tf.presets import get_preset_config

    config = get_preset_config(FLAGS.preset)
    if FLAGS.num_layers:
        config = config.replace(num_layers=FLAGS.num_layers)
    if FLAGS.input_file:
        source = TextFilesSource(FLAGS.input_file)
    else:
        corpus = demo_corpus.fetch_demo_corpus()
        source = TextFilesSource(list(corpus.train_files), corpus.blank_line_documents)
    sp_model = tokenization.load_sp_model(FLAGS.vocab_file or demo_corpus.demo_vocab())
    keras.mixed_precision.set_global_policy(FLAGS.precision)
    b, n, p = FLAGS.batch_size, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq
    # Built first, so that bad input fails before the minute of timing.
    pipeline = make_pretraining_dataset(
        source, is_training=True, sp_model=sp_model, max_seq_length=n, max_predictions_per_seq=p, batch_size=b, seed=1
    )

    matmul = benchmarking.matmul_flops_per_second()
    pipeline_rate = benchmarking.pipeline_examples_per_second(pipeline, b)

    setup = pretraining.PretrainingSetup(n, p, b, 1e-4, 10_000, 100)
    model = pretraining.build_pretraining_model(config, setup, steps_per_execution=FLAGS.steps_per_execution)
    seconds = benchmarking.train_step_seconds(model, benchmarking.synthetic_batch(config, b, n, p), FLAGS.steps)
    step_flops = benchmarking.train_flops_per_example(config, n, p) * b / seconds
    step_rate = b / seconds

    print(f"model: {FLAGS.preset} with {config.num_layers} layers, d_model {config.d_model}, d_ffn {config.d_ffn}, "
          f"seq {n}, batch {b}, {FLAGS.precision}")
    print(f"input pipeline alone:       {pipeline_rate:10.1f} examples/s")
    print(f"train step consumes:        {step_rate:10.1f} examples/s ({step_rate * n:.0f} tokens/s, "
          f"{seconds * 1000:.1f} ms/step)")
    print(f"pipeline / step:            {pipeline_rate / step_rate:10.1f}x   (target >= 5x)")
    print(f"train step achieves:        {step_flops / 1e9:10.1f} GFLOP/s (3 x forward FLOPs)")
    print(f"float32 matmul, same run:   {matmul / 1e9:10.1f} GFLOP/s (2048^3, XLA)")
    print(f"step / matmul:              {100 * step_flops / matmul:10.1f}%  (target >= 50% at base width)")
    print(f"peak memory (RSS):          {benchmarking.peak_memory_bytes() / 2**30:10.2f} GiB")


if __name__ == "__main__":
    app.run(main)
