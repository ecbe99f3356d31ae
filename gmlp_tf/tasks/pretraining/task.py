"""The pretraining task: what run_pretraining.py runs (BERT's run_pretraining.py, with Keras fit).

The script turns its flags into a JobSpec (one field per flag) and runs a PretrainingTask with
gmlp_tf.runtime.runner; everything that can be checked is checked when the task is made, before
any work starts, so bad input costs one clear error line.
"""

import dataclasses
import math
import os
from typing import Any, Callable, ContextManager, Dict, List, Optional, Union

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.presets import get_preset_config
from gmlp_tf.runtime import checks, custom_loop, run_directory, runner
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.runtime.task import RunState, Schedule, Task
from gmlp_tf.runtime.training import DatasetLike, EvaluateFn
from gmlp_tf.tasks.pretraining import demo_data
from gmlp_tf.tasks.pretraining import recipe as mlm
from gmlp_tf.tasks.pretraining.data import make_pretraining_dataset
from gmlp_tf.tasks.pretraining.packing import check_example_format
from gmlp_tf.tasks.pretraining.sources import (
    TextFilesSource,
    TfdsSource,
    TFRecordSource,
    check_text_file,
    expand_patterns,
)
from gmlp_tf.tasks.pretraining.tfrecords import damaged_files_named
from gmlp_tf.tasks.pretraining.unigram import unigram_perplexity

DEMO_PRESET = "gmlp_demo"
# Where the demo writes, and where the finetuning demos look for its encoder.
DEMO_OUTPUT_DIR = os.path.join("output", "pretraining_demo")
# The demo recipe of a preset that the default one does not fit (by default "demo").
DEMO_SETUPS = {"gmlp_long": "long_demo"}
# Training batches of 64 counted for the unigram baseline (enough for stable frequencies): 200, or
# fewer of sequences longer than 128 tokens, so that they hold no more tokens than 200 of 128.
UNIGRAM_TRAIN_BATCHES = 200


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_pretraining.py. None: the --setup recipe's value (or the demo's)."""

    gmlp_config_file: Optional[str] = option(None, "Model config JSON (like bert_config.json).")
    preset: Optional[str] = option(None, "A preset name instead of --gmlp_config_file (see model_summary.py).")
    setup: Optional[str] = option(
        None, "Table 8 recipe giving the defaults below: ablation (seq 128, batch 2048, lr 7e-4, 125K steps) or "
        "full (seq 512, batch 256, lr 1e-4, 1M steps); demo for the CPU demo, long_demo for --preset=gmlp_long's "
        "(seq 4096, batch 2; its default).", tuple(mlm.SETUPS))
    input_file: Optional[str] = option(None, "Comma-separated globs of training text files (or TFRecords).")
    eval_input_file: Optional[str] = option(
        None, "Comma-separated globs of held-out files (never the training files).")
    input_format: str = option("text", "text: raw text, tokenized and masked in the pipeline; tfrecord: "
                                       "create_pretraining_data.py output.", ("text", "tfrecord"))
    example_format: str = option(
        "segment_pair", "Text input's examples: segment_pair, BERT's [CLS] A [SEP] B [SEP] with segment_ids 0 then "
        "1 (the paper follows BERT's protocol); packed, one segment of running text.", ("segment_pair", "packed"))
    short_seq_prob: Optional[float] = option(
        None, "Share of text examples with a shorter target length drawn in [2, max_seq_length] (default: BERT's "
        "0.1 for segment_pair, 0 for packed).")
    blank_line_documents: bool = option(False, "Text files hold blank-line separated documents, not one per line.")
    tfds_name: Optional[str] = option(None, "A TFDS text dataset instead of files, e.g. c4/en (the paper's data).")
    tfds_data_dir: Optional[str] = option(None, "TFDS data directory (e.g. a gs:// bucket).")
    tfds_train_split: str = option("train", "TFDS split to train on.")
    tfds_eval_split: str = option("validation", "TFDS split to evaluate on.")
    tfds_text_key: str = option("text", "Text feature of the TFDS dataset.")
    tfds_download: bool = option(False, "Let TFDS download and prepare the dataset if it is missing.")
    vocab_file: Optional[str] = option(None, "SentencePiece model (scripts/create_vocab.py).")
    max_seq_length: Optional[int] = option(None, "Tokens per example, [CLS] and [SEP] included (<= config's).")
    max_predictions_per_seq: Optional[int] = option(None, "Masked positions per example at most.")
    train_batch_size: Optional[int] = option(None, "Global training batch size.")
    eval_batch_size: Optional[int] = option(None, "Global evaluation batch size (default: the training batch size).")
    learning_rate: Optional[float] = option(None, "Peak learning rate.")
    num_train_steps: Optional[int] = option(None, "Training steps.")
    num_warmup_steps: Optional[int] = option(None, "Linear warmup steps.")
    weight_decay: float = option(0.01, "AdamW decoupled weight decay (Table 8).")
    jit_compile: bool = option(
        True, "Compile the train step with XLA when one replica trains (Keras' default leaves XLA off on CPUs: the "
        "demo's step is ~25% faster with it). Multi-replica strategies keep Keras' choice.")
    save_checkpoints_steps: Optional[int] = option(None, "Steps between checkpoints (default: 1000, demo 500).")
    shuffle_buffer: Optional[int] = option(
        None, "Training sequences in the shuffle buffer (default: 1.28M tokens' worth, 10,000 of 128).")
    max_eval_steps: Optional[int] = option(None, "Evaluation batches at most (default: the whole held-out set).")
    do_train: bool = option(True, "Train.")
    do_eval: bool = option(True, "Evaluate on the held-out data and write eval_results.txt.")

    @property
    def is_demo(self) -> bool:
        """No data given: the embedded demo on the cached Shakespeare corpus."""
        return not (self.input_file or self.tfds_name)


def demo_spec(spec: JobSpec) -> JobSpec:
    """The embedded default: the cached Shakespeare corpus, its vocabulary and the demo model."""
    corpus = demo_data.fetch_demo_corpus()
    preset = spec.preset or (None if spec.gmlp_config_file else DEMO_PRESET)
    # Another preset's demo writes beside the demo encoder, not over it (the finetuning demos read that).
    output_dir = DEMO_OUTPUT_DIR if preset in (None, DEMO_PRESET) else os.path.join("output", f"pretraining_{preset}")
    return dataclasses.replace(
        spec,
        input_file=",".join(corpus.train_files),
        eval_input_file=",".join(corpus.eval_files),
        blank_line_documents=corpus.blank_line_documents,
        vocab_file=spec.vocab_file or demo_data.demo_vocab(),
        preset=preset,
        setup=spec.setup or DEMO_SETUPS.get(preset, "demo"),
        output_dir=spec.output_dir or output_dir,
        save_checkpoints_steps=500 if spec.save_checkpoints_steps is None else spec.save_checkpoints_steps,
    )


def check_flags(spec: JobSpec) -> None:
    """The numeric flags given (None: the recipe's), checked before the demo data or any file is read."""
    checks.check_positive(
        learning_rate=spec.learning_rate, train_batch_size=spec.train_batch_size,
        eval_batch_size=spec.eval_batch_size, num_train_steps=spec.num_train_steps,
        save_checkpoints_steps=spec.save_checkpoints_steps, max_eval_steps=spec.max_eval_steps,
        max_seq_length=spec.max_seq_length, max_predictions_per_seq=spec.max_predictions_per_seq,
        log_every_steps=spec.log_every_steps, steps_per_execution=spec.steps_per_execution,
        shuffle_buffer=spec.shuffle_buffer)
    checks.check_non_negative(num_warmup_steps=spec.num_warmup_steps, weight_decay=spec.weight_decay)


def model_config(spec: JobSpec) -> GMLPConfig:
    """The model config named by --gmlp_config_file or --preset."""
    if spec.gmlp_config_file:
        return GMLPConfig.from_json_file(spec.gmlp_config_file)
    if spec.preset:
        return get_preset_config(spec.preset)
    raise ValueError("give the model: --gmlp_config_file or --preset")


def pretraining_recipe(spec: JobSpec) -> mlm.PretrainingRecipe:
    """The --setup recipe (ablation by default) with the flags that override it, checked."""
    base = mlm.SETUPS[spec.setup or "ablation"]
    overrides = {
        name: getattr(spec, name)
        for name in (f.name for f in dataclasses.fields(mlm.PretrainingRecipe))
        if getattr(spec, name) is not None
    }
    setup = dataclasses.replace(base, **overrides)
    checks.check_positive(**{name: getattr(setup, name) for name in (
        "max_seq_length", "max_predictions_per_seq", "train_batch_size", "num_train_steps")})
    if setup.num_warmup_steps > setup.num_train_steps:
        raise ValueError(
            f"--num_warmup_steps ({setup.num_warmup_steps}) exceeds --num_train_steps ({setup.num_train_steps})"
        )
    return setup


def _sources(spec: JobSpec):
    """(train source, eval source or None); the evaluation data never comes from training files."""
    if spec.tfds_name:
        if spec.do_eval and spec.tfds_eval_split == spec.tfds_train_split:
            raise ValueError("--tfds_eval_split must differ from --tfds_train_split")

        def tfds_source(split):
            return TfdsSource(spec.tfds_name, split, spec.tfds_data_dir, spec.tfds_text_key, spec.tfds_download)

        return tfds_source(spec.tfds_train_split), tfds_source(spec.tfds_eval_split)
    train_files = expand_patterns(spec.input_file)
    eval_source = None
    if spec.do_eval:
        if not spec.eval_input_file:
            raise ValueError("--do_eval needs --eval_input_file (held-out files, not the training files)")
        eval_files = expand_patterns(spec.eval_input_file)
        shared = sorted(set(train_files) & set(eval_files))
        if shared:
            raise ValueError(f"evaluation files are also training files: {', '.join(shared[:3])}")
        eval_source = _file_source(spec, eval_files)
    return _file_source(spec, train_files), eval_source


def _file_source(spec: JobSpec, files: List[str]):
    if spec.input_format == "tfrecord":
        return TFRecordSource(files)
    for path in files:
        check_text_file(path)
    return TextFilesSource(files, spec.blank_line_documents)


class PretrainingTask(Task):
    """Masked-LM pretraining (Table 8's recipes) on text files, TFRecords or a TFDS text dataset."""

    spec_class = JobSpec
    demo_output_dir = DEMO_OUTPUT_DIR
    model_task = "pretraining"

    def __init__(self, spec: JobSpec) -> None:
        """Fills in defaults (the demo's when no data is given) and checks every input.

        Raises:
          ValueError: naming the first problem found.
        """
        check_flags(spec)
        if spec.gmlp_config_file and spec.preset:
            raise ValueError("give --gmlp_config_file or --preset, not both")
        if spec.input_file and spec.tfds_name:
            raise ValueError("give --input_file or --tfds_name, not both")
        spec = demo_spec(spec) if spec.is_demo else spec
        super().__init__(spec)
        checks.require_output_dir(spec.output_dir)
        self.config = model_config(spec)
        self.recipe_values = pretraining_recipe(spec)
        checks.check_max_seq_length(self.recipe_values.max_seq_length, self.config)
        check_example_format(spec.example_format, spec.short_seq_prob, self.recipe_values.max_seq_length)
        if self.config.modality != "text":
            raise ValueError("masked-LM pretraining needs a text model config, got an image one")
        checks.check_init_checkpoint(spec.init_checkpoint, self.config)
        self.sp_model = None
        if spec.input_format == "text" or spec.tfds_name:
            if not spec.vocab_file:
                raise ValueError("--vocab_file (a SentencePiece model from create_vocab.py) is required")
            self.sp_model = tokenization.load_model_vocab(spec.vocab_file, self.config.vocab_size)
        self.train_source, self.eval_source = _sources(spec)
        steps, num_steps = spec.save_checkpoints_steps, self.recipe_values.num_train_steps
        self.save_checkpoints_steps = min(1000, num_steps) if steps is None else steps
        checks.check_checkpoint_interval(num_steps, self.save_checkpoints_steps, spec.steps_per_execution)
        self.vocabulary = self.sp_model or (tokenization.load_sp_model(spec.vocab_file) if spec.vocab_file else None)
        self.eval_data = None
        self.fresh_train_data = None  # prepare's training stream, handed to a run that starts at step 0.
        self.jit_compile: Union[bool, str] = "auto"  # Set by prepare, which knows the strategy.
        self.checkpoint_results: Optional[Dict[str, Any]] = None  # The last evaluation at a checkpoint.
        # The final results include the unigram baseline's perplexity; a study that runs many jobs on
        # the same data computes it once.
        self.unigram_baseline = True

    def dataset(self, source: Any, is_training: bool, batch_size: int, input_context: Any = None) -> tf.data.Dataset:
        """Batches of BERT's masked-LM features of `source` (masked with the run's seed when training)."""
        spec, values = self.spec, self.recipe_values
        return make_pretraining_dataset(
            source, is_training=is_training, sp_model=self.sp_model, max_seq_length=values.max_seq_length,
            max_predictions_per_seq=values.max_predictions_per_seq, batch_size=batch_size,
            seed=spec.random_seed if is_training else None, input_context=input_context,
            shuffle_buffer=spec.shuffle_buffer, example_format=spec.example_format,
            short_seq_prob=spec.short_seq_prob,
        )

    @property
    def eval_batch_size(self) -> int:
        return self.spec.eval_batch_size or self.recipe_values.train_batch_size

    def _distributed(self, strategy: tf.distribute.Strategy, source: Any, is_training: bool, batch_size: int,
                     skip: int = 0) -> DatasetLike:
        """The strategy's per-replica batches of the stream without its first `skip` (global) batches.

        Across workers (multi_worker), every worker reads the global batches and takes its rows
        (runtime.custom_loop.distribute), so a cluster trains on exactly the batches one process would.
        """
        if runner.is_multi_worker(strategy):
            batches = self.dataset(source, is_training, batch_size).skip(skip).map(mlm.split_features)
            return custom_loop.distribute(strategy, batches)

        def dataset_fn(context):  # Skipped after masking, so a resumed run sees exactly the batches it had not.
            per_step = context.num_replicas_in_sync // context.num_input_pipelines  # This pipeline's batches a step.
            dataset = self.dataset(source, is_training, batch_size, context)
            return dataset.skip(skip * per_step).map(mlm.split_features)

        return strategy.distribute_datasets_from_function(dataset_fn)

    def prepare(self, strategy: tf.distribute.Strategy) -> None:
        """The datasets, made once here: they check the input files and TFDS names before anything is written."""
        if self.do_train:
            # Kept, not rebuilt, for a run from step 0: building the stream traces its tokenization
            # and masking, seconds on a small CPU.
            self.fresh_train_data = self.train_data(strategy)(0)
        if self.spec.do_eval and not runner.is_multi_worker(strategy):  # Across workers: the chief, after training.
            self.eval_data = self._distributed(strategy, self.eval_source, False, self.eval_batch_size)
        # Keras runs XLA under a multi-replica strategy only on TPUs (which compile in any case).
        self.jit_compile = True if self.spec.jit_compile and strategy.num_replicas_in_sync == 1 else "auto"
        logging.info("Recipe: %s", self.recipe_values)

    def build_model(self) -> keras.Model:
        return mlm.evaluation_model(self.config)

    def compile_for_training(self, model: keras.Model) -> None:
        mlm.compile_for_training(model, self.recipe_values, self.spec.steps_per_execution, self.spec.weight_decay,
                                 jit_compile=self.jit_compile)

    def schedule(self) -> Schedule:
        return Schedule(self.recipe_values.num_train_steps, self.save_checkpoints_steps)

    def train_data(self, strategy: tf.distribute.Strategy) -> Callable[[int], DatasetLike]:
        batch_size = self.recipe_values.train_batch_size

        def make(skip: int) -> DatasetLike:
            if skip == 0 and self.fresh_train_data is not None:
                data, self.fresh_train_data = self.fresh_train_data, None
                return data
            return self._distributed(strategy, self.train_source, True, batch_size, skip)

        return make

    def checkpoint_evaluator(self) -> Optional[EvaluateFn]:
        if self.eval_data is None:
            return None

        def evaluate(model: keras.Model) -> Dict[str, Any]:
            results = mlm.evaluate(model, self.eval_data, self.spec.max_eval_steps)
            self.checkpoint_results = dict(results)
            return results

        return evaluate

    def recipe(self) -> Dict[str, Any]:
        return dict(dataclasses.asdict(self.recipe_values), save_checkpoints_steps=self.save_checkpoints_steps,
                    weight_decay=self.spec.weight_decay)

    def evaluate(self, model: keras.Model, state: RunState) -> Dict[str, Any]:
        """Held-out masked-LM loss, accuracy and perplexity, beside the unigram baseline's."""
        if not self.spec.do_eval:
            return {}
        data = self.eval_data
        if data is None:  # Across workers the chief evaluates on this process alone.
            data = self.dataset(self.eval_source, False, self.eval_batch_size).map(mlm.split_features)
        last = self.checkpoint_results
        if last is not None and data is self.eval_data and last["global_step"] == state.global_step:
            results = dict(last)  # Evaluated at the final checkpoint already: the same weights and data.
        else:
            results = mlm.evaluate(model, data, self.spec.max_eval_steps)
        results["global_step"] = state.global_step
        if self.unigram_baseline:
            results.update(self._unigram_baseline())
        return results

    def _unigram_baseline(self) -> Dict[str, float]:
        """The unigram perplexity of the same held-out masked tokens (text sources only)."""
        if isinstance(self.train_source, TFRecordSource) or not self.sp_model:
            return {}
        value = unigram_perplexity(
            self.dataset(self.train_source, True, 64),
            self.dataset(self.eval_source, False, self.eval_batch_size),
            vocab_size=self.config.vocab_size,
            max_train_batches=max(1, UNIGRAM_TRAIN_BATCHES * 128 // max(128, self.recipe_values.max_seq_length)),
            max_eval_batches=self.spec.max_eval_steps,
        )
        return {"unigram_perplexity": value}

    def input_errors(self) -> ContextManager[None]:
        return damaged_files_named((self.train_source, self.eval_source))

    def report_lines(self, results: Dict[str, Any]) -> List[str]:
        return report_lines(results, self.spec)


def run(spec: JobSpec) -> Dict[str, Any]:
    """Runs the job; returns the evaluation results ({} without --do_eval, and on workers but the chief)."""
    return runner.run(PretrainingTask(spec))

def report_lines(results: Optional[Dict[str, Any]], spec: Optional[JobSpec] = None) -> List[str]:
    """The lines the script prints at the end."""
    if not results:
        return []
    lines = run_directory.result_lines(results)
    if "unigram_perplexity" in results:
        lines.append(
            f"Held-out masked-LM perplexity {results['perplexity']:.2f} vs unigram perplexity "
            f"{results['unigram_perplexity']:.2f} on the same tokens "
            f"({compared_to_baseline(results['perplexity'], results['unigram_perplexity'])})"
        )
    return lines


def compared_to_baseline(value: float, baseline: float) -> str:
    """How a perplexity compares with the baseline's: "3.2x lower" (better), "1.5x higher" (worse)."""
    if not (math.isfinite(value) and math.isfinite(baseline)) or value <= 0 or baseline <= 0:
        return "not comparable: a perplexity is not finite and positive"
    ratio = max(value, baseline) / min(value, baseline)
    if value == baseline:
        return "the same"
    return f"{ratio:.{1 if ratio >= 1.1 else 3}f}x {'lower' if value < baseline else 'higher'}"
