"""Prints pretraining speed figures: input pipeline, train step, its FLOP/s beside a matmul's, memory.

  python scripts/benchmark_pretraining.py                      # base width (d 512, d_ffn 3072), seq 128
  python scripts/benchmark_pretraining.py --preset=gmlp_demo --num_layers=0 --batch_size=32

Figures, not a test: the targets (pipeline >= 5x what the step consumes; step >= 70% of the
same-run matmul rate at base width) are for reading, and the README records a run.
"""

from absl import app

from gmlp_tf.benchmarks.pretraining import BenchmarkSpec, report_lines, run
from gmlp_tf.runtime import flags, runner

flags.define_flags(BenchmarkSpec)

if __name__ == "__main__":
    app.run(runner.script_main(BenchmarkSpec, run, report_lines))
