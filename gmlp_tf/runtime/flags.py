"""absl flags shared by the scripts (defined once here; library functions take plain values)."""

import dataclasses
import sys
from typing import Optional

from absl import flags, logging

from gmlp_tf.runtime.distribution import STRATEGIES

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def define_distribution_flags():
    """--strategy, --tpu, --tpu_zone, --gcp_project, --steps_per_execution, --precision."""
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "Distribution strategy; --tpu implies tpu.")
    flags.DEFINE_string("tpu", None, "TPU name or grpc:// address ('local' on a TPU VM).")
    flags.DEFINE_string("tpu_zone", None, "GCE zone of the TPU (optional on TPU VMs).")
    flags.DEFINE_string("gcp_project", None, "GCP project of the TPU (optional on TPU VMs).")
    flags.DEFINE_integer(
        "steps_per_execution", 1,
        "Train steps run per call into the device (BERT's iterations_per_loop); 100-1000 on TPU.",
    )
    flags.DEFINE_enum(
        "precision", "float32", list(PRECISIONS),
        "Keras dtype policy: mixed_bfloat16 on TPU (logits and losses stay float32).",
    )


def define_output_flags():
    """--output_dir and --init_checkpoint, with BERT's resume-versus-warm-start rule."""
    flags.DEFINE_string("output_dir", None, "Checkpoints, TensorBoard logs and results; rerunning resumes.")
    flags.DEFINE_string(
        "init_checkpoint", None,
        "A run_pretraining output directory to warm-start from; used only when --output_dir holds "
        "no checkpoint yet.",
    )


@dataclasses.dataclass
class CommonSpec:
    """The values of the shared flags; each job's JobSpec extends it with its own flags."""

    strategy: str = "default"
    tpu: Optional[str] = None
    tpu_zone: Optional[str] = None
    gcp_project: Optional[str] = None
    steps_per_execution: int = 1
    precision: str = "float32"
    output_dir: Optional[str] = None
    init_checkpoint: Optional[str] = None

    @classmethod
    def field_names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_flags(cls, flag_values):
        """The spec of parsed flags (the script passes its FLAGS; one field per flag)."""
        return cls(**{name: flag_values[name].value for name in cls.field_names()})


def run_main(program, job):
    """Runs job(); bad input ends the script with one line "<program>: error: ..." and exit 1."""
    try:
        return job()
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        logging.flush()
        sys.exit(f"{program}: error: {err}")
