"""SQuAD v1.1 / v2.0 finetuning of a pretrained gMLP / aMLP (BERT's run_squad.py, with Keras fit).

With no flags it finetunes the demo pretraining checkpoint (output/pretraining_demo, pretrained
first if missing) on the 5 real SQuAD v1.1 questions that the allennlp 0.9.0 wheel carries and
scores its predictions of them: a check of the whole path on real data (no QA set of useful size
can be installed from a package registry), not a reading-comprehension result.

At full scale:

  python scripts/run_squad.py --init_checkpoint=gs://BUCKET/amlp_base \
    --train_file=train-v2.0.json --predict_file=dev-v2.0.json --version_2_with_negative \
    --do_train --do_predict --output_dir=gs://BUCKET/amlp_base_squad2 --tpu=local

or --tfds_name=squad/v1.1 | squad/v2.0 instead of the JSON files. Writes predictions.json,
nbest_predictions.json (and, for v2.0, null_odds.json), and, when the prediction file has gold
answers, the official exact match and F1 in eval_results.txt and eval_results.json.
"""

from absl import app

from gmlp_tf.runtime import flags, runner
from gmlp_tf.tasks.squad.task import JobSpec, report_lines, run

flags.define_flags(JobSpec)

if __name__ == "__main__":
    app.run(runner.script_main(JobSpec, run, report_lines))
