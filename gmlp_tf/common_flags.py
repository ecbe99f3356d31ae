"""absl flags shared by the scripts (defined once here; library functions take plain values)."""

from absl import flags

from gmlp_tf.distribution import STRATEGIES

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
