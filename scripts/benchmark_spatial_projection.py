"""Prints the Toeplitz spatial projection's time and peak memory, matmul path against FFT path.

  python scripts/benchmark_spatial_projection.py                       # n = 128 ... 16384, 1536 channels
  python scripts/benchmark_spatial_projection.py --lengths=256,512,1024 --causal
  python scripts/benchmark_spatial_projection.py --block_layouts --lengths=4096,16384   # the block, two layouts

Figures, not a test. The crossover where the FFT wins sets FFT_MIN_LENGTH, the length from which
implementation="auto" takes the FFT.
"""

from absl import app

from gmlp_tf.benchmarks.spatial_projection import SpatialBenchmarkSpec, report_lines, run
from gmlp_tf.runtime import flags, runner

flags.define_flags(SpatialBenchmarkSpec)

if __name__ == "__main__":
    app.run(runner.script_main(SpatialBenchmarkSpec, run, report_lines))
