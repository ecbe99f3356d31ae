"""GLUE finetuning of a pretrained gMLP / aMLP (BERT's run_classifier.py, with Keras fit).

With no flags it finetunes the demo pretraining checkpoint (output/pretraining_demo, pretrained
first if missing) on real movie-review sentences with sentiment labels (fetched once from the
PyPI source archive vaderSentiment==3.3.2) and reports held-out accuracy beside the
majority-class baseline.

A GLUE task, with the paper's recipe (Table 9) and a sweep over its learning rates, median of 5
seeds as in the paper:

  python scripts/run_classifier.py --task_name=mnli --data_dir=glue_data \
    --init_checkpoint=gs://BUCKET/amlp_base --output_dir=gs://BUCKET/amlp_base_mnli \
    --learning_rates=1e-5,2e-5,3e-5 --num_seeds=5 --do_train --do_eval --do_predict --tpu=local
"""

from absl import app

from gmlp_tf.runtime import flags, runner
from gmlp_tf.tasks.glue.task import JobSpec, report_lines, run

flags.define_flags(JobSpec)

if __name__ == "__main__":
    app.run(runner.script_main(JobSpec, run, report_lines))
