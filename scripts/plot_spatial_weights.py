"""Draws what a trained gMLP / aMLP's spatial projections learned, and scores how Toeplitz they are.

  python scripts/plot_spatial_weights.py --model_dir=output/pretraining_demo --output_dir=figures/demo
  python scripts/plot_spatial_weights.py --model_dir=output/mnli_amlp --output_dir=figures/amlp \
    --text='The cat sat on the mat.|A dog barked at the cat.'
  python scripts/plot_spatial_weights.py --model_dir=output/gmlp_s16_timm --output_dir=figures/vision

Text models get the paper's Figures 4 and 9, image models Figure 3, aMLP text models Figure 10 too
(of the '|'-separated --text sentences, or of two built-in ones); spatial_weights.json holds each
layer's Toeplitz score beside that of the W the run started from (redrawn with --random_seed). See
gmlp_tf/analysis/report.py for the files and their format.
"""

from absl import app

from gmlp_tf.analysis.report import SpatialWeightsSpec, report_lines, run
from gmlp_tf.runtime import flags, runner

flags.define_flags(SpatialWeightsSpec)

if __name__ == "__main__":
    app.run(runner.script_main(SpatialWeightsSpec, run, report_lines))
