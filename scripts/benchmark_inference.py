"""Prints image inference speed: Keras predict and the exported SavedModel, beside a same-run matmul and timm.

  python scripts/benchmark_inference.py                                   # gMLP-S/16, batch 32
  python scripts/benchmark_inference.py --presets=gmlp_ti16_224,gmlp_s16_224,gmlp_b16_224 \\
      --timm_python=/path/to/venv-with-timm/bin/python

Figures, not a test: the targets (at least 1.5x timm's images/s and 75% of the matmul's FLOP/s)
are for reading, and docs/speed.md records the runs. "its matmuls alone" times the model's
matmuls in its shapes without the rest, the share of the matmul its width allows.
"""

from absl import app

from gmlp_tf.benchmarks.inference import InferenceBenchmarkSpec, report_lines, run
from gmlp_tf.runtime import flags, runner

flags.define_flags(InferenceBenchmarkSpec)

if __name__ == "__main__":
    app.run(runner.script_main(InferenceBenchmarkSpec, run, report_lines))
