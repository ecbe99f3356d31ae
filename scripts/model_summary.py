"""Prints each preset's parameters and FLOPs beside the paper's figures (Tables 1, 3, 4, 5).

  python scripts/model_summary.py                      # every preset, as a table
  python scripts/model_summary.py --preset=gmlp_base   # one preset
  python scripts/model_summary.py --format=json        # for machines
  python scripts/model_summary.py --preset=gmlp_ti16_224 --build   # also build it and count its weights
"""

import dataclasses
import json
import sys

from absl import app, flags

flags.DEFINE_string("preset", None, "One preset name; every preset if unset.")
flags.DEFINE_enum("format", "text", ["text", "json"], "Output format.")
flags.DEFINE_bool("build", False, "Also build each model and count its Keras weights (slow for large presets).")

FLAGS = flags.FLAGS


def main(argv):
    from gmlp_tf.runtime import runner  # Imports the package (TensorFlow): after absl has parsed the flags.

    runner.refuse_arguments(argv)
    from gmlp_tf import presets, summary

    names = [FLAGS.preset] if FLAGS.preset else summary.paper_order(presets.list_presets())
    try:
        rows = [summary.summarize(name, build=FLAGS.build) for name in names]
    except ValueError as err:
        sys.exit(f"model_summary.py: error: {err}")
    if FLAGS.format == "json":
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        print(summary.format_table(rows))
        print("\nFLOPs = 2 x multiply-adds of one example's forward pass; text models include the "
              "masked-LM head on 15% of the tokens.")


if __name__ == "__main__":
    app.run(main)
