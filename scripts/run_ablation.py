"""The paper's Table 3: gMLP's gating variants against Transformer and MLP-Mixer baselines.

Pretrains every variant on the same data, vocabulary, steps, batch, sequence length and seed
(each an ordinary run_pretraining.py output directory, OUTPUT_DIR/<variant>/) and writes
OUTPUT_DIR/ablation.md, ablation.json and ablation.png (held-out perplexity against step).

With no flags it runs the embedded demo: the ten variants of configs/gmlp_demo.json's size, and
keras-hub's BERT as an external reference row where keras-hub is installed (pip install ".[bench]"),
on the cached Shakespeare corpus, 400 steps each. A rerun with the same --output_dir skips finished
variants and resumes an interrupted one.

--learning_rates=5e-4,1e-3,2e-3 trains every variant at each peak rate and tabulates each at its best;
--sizing=paper makes the baselines wider than gMLP as the paper's are (768 / 512).

--study=scaling asks the paper's Table 4 / Figure 5 question instead: gMLP at each of --scaling_depths
(default 2,4,8) and the Transformer sized against each (--variants, default gmlp_split,transformer),
600 steps a run by default, into OUTPUT_DIR/scaling.md, scaling.json and two plots (perplexity against
parameters and against training FLOPs). At the paper's scale, on a TPU:

  python scripts/run_ablation.py --study=scaling --scaling_depths=18,36,72,144 --tpu=local \
    --precision=mixed_bfloat16 --preset=gmlp_36l --setup=ablation --vocab_file=gs://BUCKET/spm32k.model \
    --tfds_name=c4/realnewslike --tfds_data_dir=gs://BUCKET/tensorflow_datasets \
    --max_eval_steps=100 --output_dir=gs://BUCKET/scaling --steps_per_execution=1000

At the paper's scale (Table 8's ablation setup, C4 through TFDS on a TPU):

  python scripts/run_ablation.py --tpu=local --precision=mixed_bfloat16 \
    --preset=gmlp_36l --setup=ablation --vocab_file=gs://BUCKET/spm32k.model \
    --tfds_name=c4/realnewslike --tfds_data_dir=gs://BUCKET/tensorflow_datasets \
    --max_eval_steps=100 --output_dir=gs://BUCKET/ablation --steps_per_execution=1000
"""

from absl import app

from gmlp_tf.runtime import flags, runner
from gmlp_tf.studies.ablation import AblationSpec, run_study, study_report_lines

flags.define_flags(AblationSpec)

if __name__ == "__main__":
    app.run(runner.script_main(AblationSpec, run_study, study_report_lines))
