"""Job specs and their absl flags: one dataclass field per flag, the shared flags declared once.

A job's spec is a dataclass whose fields carry their flag help (`option`); `define_flags` turns
the fields into absl flags and `spec_from_flags` turns parsed flags back into the spec, so the
flags and the spec cannot drift apart. The flags every job shares (`SHARED`: strategy, TPU, cluster
timeout, precision, output directory, warm start, logging, seed) are defined by this module, once, and adopted as
key flags of the script, so that `--helpshort` lists them with the script's own.
"""

import dataclasses
import sys
import typing
from typing import Any, Optional, Sequence, Type, TypeVar

from absl import flags

from gmlp_tf.runtime.distribution import STRATEGIES

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
Spec = TypeVar("Spec")


def option(default: Any, help: str, choices: Optional[Sequence[str]] = None) -> Any:
    """A spec field that is also a flag: its default, its help and, for an enum, its choices."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": tuple(choices or ())})


# The flags every script of the project spells and means the same way.
SHARED = {
    "strategy": (str, option("default", "Distribution strategy; --tpu implies tpu.", STRATEGIES)),
    "tpu": (Optional[str], option(None, "TPU name or grpc:// address ('local' on a TPU VM).")),
    "tpu_zone": (Optional[str], option(None, "GCE zone of the TPU (optional on TPU VMs).")),
    "gcp_project": (Optional[str], option(None, "GCP project of the TPU (optional on TPU VMs).")),
    "cluster_timeout_s": (int, option(
        600, "Seconds a multi_worker job waits for every worker of TF_CONFIG's cluster before it gives up.")),
    "steps_per_execution": (int, option(
        1, "Train steps run per call into the device (BERT's iterations_per_loop); 100-1000 on TPU.")),
    "precision": (str, option(
        "float32", "Keras dtype policy: mixed_bfloat16 on TPU (logits and losses stay float32).", PRECISIONS)),
    "output_dir": (Optional[str], option(None, "Checkpoints, TensorBoard logs and results; rerunning resumes.")),
    "init_checkpoint": (Optional[str], option(
        None, "An output directory of another run to warm-start from; used only when --output_dir holds no "
        "checkpoint yet.")),
    "log_every_steps": (int, option(
        100, "Steps between TensorBoard training scalars (loss, learning rate, metrics) in OUTPUT_DIR/logs/train; "
        "held-out scalars go to logs/eval at every checkpoint. Both are indexed by the global step.")),
    "eval_at_checkpoints": (bool, option(
        True, "When training with held-out data, also evaluate it at every checkpoint (TensorBoard logs/eval); "
        "turn off, or bound the evaluation, for large held-out sets.")),
    "random_seed": (int, option(12345, "Seed of initialisation, shuffling and masking (sweeps: run i uses "
                                       "random_seed + i).")),
}


def shared(name: str) -> Any:
    """The field of a shared flag, for a spec that reads only some of them."""
    return option(SHARED[name][1].default, SHARED[name][1].metadata["help"], SHARED[name][1].metadata["choices"])


@dataclasses.dataclass
class CommonSpec:
    """The shared flags of the jobs; each job's spec extends it with its own fields."""

    strategy: str = shared("strategy")
    tpu: Optional[str] = shared("tpu")
    tpu_zone: Optional[str] = shared("tpu_zone")
    gcp_project: Optional[str] = shared("gcp_project")
    cluster_timeout_s: int = shared("cluster_timeout_s")
    steps_per_execution: int = shared("steps_per_execution")
    precision: str = shared("precision")
    output_dir: Optional[str] = shared("output_dir")
    init_checkpoint: Optional[str] = shared("init_checkpoint")
    log_every_steps: int = shared("log_every_steps")
    eval_at_checkpoints: bool = shared("eval_at_checkpoints")
    random_seed: int = shared("random_seed")


def define_flags(spec_cls: type, flag_values: flags.FlagValues = flags.FLAGS,
                 module_name: Optional[str] = None) -> None:
    """Defines one absl flag per field of the dataclass spec_cls.

    The shared fields are defined as this module's flags (once per process) and the others as
    flags of the calling script; all of them become the script's key flags (--helpshort).

    Args:
      spec_cls: a dataclass whose fields were made with `option` (or `shared`).
      flag_values: where to define them (absl's global FLAGS by default).
      module_name: the script's module name for --helpshort (default: the caller's, as absl names it).
    """
    module_name = module_name or _calling_module_name()
    hints = typing.get_type_hints(spec_cls)
    for field in dataclasses.fields(spec_cls):
        if field.name in SHARED and hints[field.name] != SHARED[field.name][0]:
            raise TypeError(f"{spec_cls.__name__}.{field.name} must be {SHARED[field.name][0]} like the shared flag")
        if field.name not in flag_values:
            owner = __name__ if field.name in SHARED else module_name
            _define(field, hints[field.name], flag_values, owner)
        flag_values.register_key_flag_for_module(module_name, flag_values[field.name])


def spec_from_flags(spec_cls: Type[Spec], flag_values: flags.FlagValues = flags.FLAGS) -> Spec:
    """The spec of parsed flags: one field per flag."""
    return spec_cls(**{f.name: flag_values[f.name].value for f in dataclasses.fields(spec_cls)})


def _define(field: dataclasses.Field, kind: Any, flag_values: flags.FlagValues, module_name: str) -> None:
    help_text, choices = field.metadata.get("help"), field.metadata.get("choices")
    if help_text is None:
        raise TypeError(f"spec field {field.name} has no help: declare it with flags.option(...)")
    args = dict(flag_values=flag_values, module_name=module_name)
    base = _base_type(kind)
    if choices:
        flags.DEFINE_enum(field.name, field.default, list(choices), help_text, **args)
    elif base is bool:
        flags.DEFINE_bool(field.name, field.default, help_text, **args)
    elif base is int:
        flags.DEFINE_integer(field.name, field.default, help_text, **args)
    elif base is float:
        flags.DEFINE_float(field.name, field.default, help_text, **args)
    elif base is str:
        flags.DEFINE_string(field.name, field.default, help_text, **args)
    else:
        raise TypeError(f"spec field {field.name} has type {kind}, which no flag type matches")


def _base_type(kind: Any) -> Any:
    """int for Optional[int], and so on."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) is typing.Union and len(args) == 1 else kind


def _calling_module_name() -> str:
    # As absl names modules: the main script by its path, so that --helpshort finds its flags.
    frame = sys._getframe(2)
    name = frame.f_globals.get("__name__", "")
    return sys.argv[0] if name == "__main__" else name
