"""The Task interface: what one kind of job says about itself. gmlp_tf.runtime.runner does the rest.

As a TF Model Garden task (official/core/base_task.py) builds its model, inputs and metrics and
leaves checkpoints, the chief and summaries to one trainer, a gmlp_tf Task says only what is its
own, in Keras 3 terms on top of `fit`:

  __init__(spec)            its flags (a CommonSpec dataclass), the embedded demo's defaults filled
                            in and every input checked; nothing written, no TensorFlow op run
  prepare(strategy)         after start-up: read and check the data, work out the schedule
  build_model()             the model, compiled as its evaluation needs (called in strategy.scope())
  compile_for_training(m)   the optimizer, losses and metrics of training
  schedule()                training steps and the checkpoint interval
  train_data(strategy)      skip -> the training batches without their first `skip` (exact resume)
  checkpoint_evaluator()    held-out metrics at every checkpoint (TensorBoard logs/eval), or None
  recipe()                  what recipe.json records
  evaluate(model, state)    the final evaluation on the chief; writes the task's own files
                            (predictions, submissions) and returns the results
  report_lines(results)     what the script prints at the end

The runner owns start-up (seed, precision, strategy), the output directory and its lock, warm
starts, resumable fit or the multi-worker loop, the NaN stop, checkpoints, TensorBoard, the
chief's evaluation and the results files. docs/architecture.md adds a task step by step.
"""

import contextlib
import dataclasses
import importlib
from typing import Any, Callable, ClassVar, ContextManager, Dict, List, Optional, Type

import keras
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime import run_directory
from gmlp_tf.runtime.flags import CommonSpec
from gmlp_tf.runtime.training import DatasetLike, EvaluateFn


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long a run trains: optimizer steps in all, and steps between checkpoints."""

    num_train_steps: int
    save_checkpoints_steps: int


@dataclasses.dataclass(frozen=True)
class RunState:
    """What the runner knows when a task evaluates.

    Attributes:
      strategy: the run's distribution strategy (evaluation itself runs outside it across workers).
      trained: whether this run trained (else it evaluates the weights it loaded).
      global_step: the optimizer step of the weights evaluated (0 for weights of unknown step).
    """

    strategy: tf.distribute.Strategy
    trained: bool
    global_step: int


class Task:
    """One kind of job (pretraining, GLUE, SQuAD, ImageNet, or one of yours); see the module docstring.

    A subclass sets `model_task` (build_model's task: "pretraining", "classification", "squad",
    "vision", or a name of its own) and, in __init__, the resolved `config` (written to the output
    directory as gmlp_config.json), `output_dir`, and where they apply `num_labels` and
    `vocabulary` (serialized SentencePiece model bytes, written beside the checkpoints).

    Attributes:
      spec_class: the dataclass of the task's flags (a CommonSpec subclass).
      demo_output_dir: where the embedded demo writes (runner.ensure_demo_run looks there).
      fit_verbose: Keras fit's verbosity.
    """

    spec_class: ClassVar[Type[CommonSpec]] = CommonSpec
    demo_output_dir: ClassVar[Optional[str]] = None
    model_task: ClassVar[str] = ""
    fit_verbose: ClassVar[Any] = 1

    def __init__(self, spec: CommonSpec) -> None:
        self.spec = spec
        self.config: Optional[GMLPConfig] = None
        self.output_dir: str = spec.output_dir or ""
        self.num_labels: Optional[int] = None
        self.vocabulary: Optional[bytes] = None

    # ---------------------------------------------------------------- what every task has
    @property
    def do_train(self) -> bool:
        """Whether the run trains (the spec's do_train, where it has one)."""
        return bool(getattr(self.spec, "do_train", True))

    @property
    def seed(self) -> int:
        """The seed of this run's initialisation, shuffling and dropout."""
        return self.spec.random_seed

    def prepare(self, strategy: tf.distribute.Strategy) -> None:
        """Reads and checks the data after start-up, before anything is written."""

    def write_run_files(self, output_dir: str) -> None:
        """Writes the task's own files beside the config (on the chief), e.g. image normalization."""

    def build_model(self) -> keras.Model:
        """The task's model, compiled for its evaluation where that needs it (inside strategy.scope())."""
        raise NotImplementedError

    def compile_for_training(self, model: keras.Model) -> None:
        """Compiles `model` for training: optimizer and schedule, losses, metrics, steps_per_execution."""
        raise NotImplementedError

    def schedule(self) -> Schedule:
        """Training steps and checkpoint interval (called after prepare)."""
        raise NotImplementedError

    def warm_start_config(self) -> GMLPConfig:
        """The config to check and warm-start --init_checkpoint against (by default the model's)."""
        return self.config

    def train_data(self, strategy: tf.distribute.Strategy) -> Callable[[int], DatasetLike]:
        """skip -> the repeating training batches without their first `skip`, the same on every call."""
        raise NotImplementedError

    def checkpoint_evaluator(self) -> Optional[EvaluateFn]:
        """model -> held-out metrics at every checkpoint; None: no held-out data (the default)."""
        return None

    def recipe(self) -> Dict[str, Any]:
        """The training recipe recorded in recipe.json (a rerun logs what changed)."""
        return {}

    def callbacks(self) -> List[keras.callbacks.Callback]:
        """More Keras callbacks for training."""
        return []

    def input_errors(self) -> ContextManager[Any]:
        """Wraps training and evaluation: turns the task's data errors into one-line ValueErrors."""
        return contextlib.nullcontext()

    def evaluate(self, model: keras.Model, state: RunState) -> Dict[str, Any]:
        """The final evaluation (chief only); writes predictions and the like. {}: nothing to report."""
        return {}

    def report_lines(self, results: Dict[str, Any]) -> List[str]:
        """The lines the script prints at the end."""
        return run_directory.result_lines(results)


# Tasks by name, as "module:Class" strings filled in by gmlp_tf.tasks: the runtime imports no task.
_REGISTRY: Dict[str, str] = {}


def register(name: str, path: str) -> None:
    """Names a Task class ("package.module:Class") so that the runtime can find it by name."""
    _REGISTRY[name] = path


def task_class(name: str) -> Type[Task]:
    """The Task class registered under `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(_REGISTRY) or 'none registered'}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
