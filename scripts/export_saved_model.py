"""Exports a trained gMLP / aMLP as a SavedModel with raw-input serving signatures.

Takes an output directory of run_pretraining.py (masked LM), run_classifier.py (one run folder:
a sweep's lr*_seed* subfolder) or run_squad.py, or of a vision run, and writes a SavedModel whose
`serving_default` signature takes raw strings (or encoded images), with the SentencePiece
tokenizer inside, plus an `encoded` signature on input_ids / input_mask / segment_ids. See
gmlp_tf/export/__init__.py for every signature, its inputs, outputs and limits.

  python scripts/export_saved_model.py --model_dir=output/mnli/lr2e-05_seed12345 \
    --task_name=mnli --export_dir=export/mnli/1

Serving needs only TensorFlow and tensorflow_text (import it before tf.saved_model.load).
"""

import dataclasses
from typing import List

from absl import app

from gmlp_tf.export import ExportSpec, export_saved_model
from gmlp_tf.runtime import flags, runner

PROGRAM = "export_saved_model.py"

flags.define_flags(ExportSpec)


def main(argv: List[str]) -> None:
    """Flags -> ExportSpec -> the export; bad input ends in one error line (runner.run_script)."""
    runner.refuse_arguments(argv)
    spec = flags.spec_from_flags(ExportSpec)
    info = runner.run_script(PROGRAM, lambda: export_saved_model(**dataclasses.asdict(spec)))
    print(f"Exported the {info['task']} model of {spec.model_dir} to {spec.export_dir}; signatures: "
          f"{', '.join(info['signatures'])}")


if __name__ == "__main__":
    app.run(main)
