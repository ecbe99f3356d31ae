"""The pretraining job: what run_pretraining.py runs (BERT's run_pretraining.py, with Keras fit).

The script turns its flags into a JobSpec (one field per flag) and calls `run`; everything that
can be checked is checked before any work starts, so bad input costs one clear error line.
"""

import dataclasses
import math
import os
from typing import Any, Dict, List, Optional

from absl import logging

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.presets import get_preset_config
from gmlp_tf.runtime import checkpointing, custom_loop
from gmlp_tf.runtime import job as runtime
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.tasks.pretraining import demo_data, recipe
from gmlp_tf.tasks.pretraining.data import (
    TextFilesSource,
    TfdsSource,
    TFRecordSource,
    check_example_format,
    expand_patterns,
    make_pretraining_dataset,
    unigram_perplexity,
)

DEMO_PRESET = "gmlp_demo"
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
        "(seq 4096, batch 2; its default).", tuple(recipe.SETUPS))
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


@dataclasses.dataclass
class ResolvedJob:
    """A JobSpec with every default filled in and every input checked."""

    spec: JobSpec
    config: GMLPConfig
    setup: recipe.PretrainingSetup
    save_checkpoints_steps: int
    train_source: Any
    eval_source: Any
    sp_model: Optional[bytes]


def demo_spec(spec: JobSpec) -> JobSpec:
    """The embedded default: the cached Shakespeare corpus, its vocabulary and the demo model."""
    corpus = demo_data.fetch_demo_corpus()
    preset = spec.preset or (None if spec.gmlp_config_file else DEMO_PRESET)
    # Another preset's demo writes beside the demo encoder, not over it (the finetuning demos read that).
    output_dir = runtime.DEMO_ENCODER_DIR if preset in (None, DEMO_PRESET) else os.path.join("output", f"pretraining_{preset}")
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


def resolve(spec: JobSpec) -> ResolvedJob:
    """Fills in defaults (the demo's when no data is given) and checks every input.

    Raises:
      ValueError: naming the first problem found.
    """
    check_flags(spec)
    if spec.gmlp_config_file and spec.preset:
        raise ValueError("give --gmlp_config_file or --preset, not both")
    if spec.input_file and spec.tfds_name:
        raise ValueError("give --input_file or --tfds_name, not both")
    if spec.is_demo:
        spec = demo_spec(spec)
    runtime.require_output_dir(spec.output_dir)
    config = model_config(spec)
    setup = pretraining_setup(spec)
    runtime.check_max_seq_length(setup.max_seq_length, config)
    check_example_format(spec.example_format, spec.short_seq_prob, setup.max_seq_length)
    if config.modality != "text":
        raise ValueError("masked-LM pretraining needs a text model config, got an image one")
    runtime.check_init_checkpoint(spec.init_checkpoint, config)
    sp_model = None
    if spec.input_format == "text" or spec.tfds_name:
        if not spec.vocab_file:
            raise ValueError("--vocab_file (a SentencePiece model from create_vocab.py) is required")
        sp_model = tokenization.load_model_vocab(spec.vocab_file, config.vocab_size)
    train_source, eval_source = _sources(spec)
    steps = min(1000, setup.num_train_steps) if spec.save_checkpoints_steps is None else spec.save_checkpoints_steps
    runtime.check_checkpoint_interval(setup.num_train_steps, steps, spec.steps_per_execution)
    return ResolvedJob(spec, config, setup, steps, train_source, eval_source, sp_model)


def check_flags(spec: JobSpec) -> None:
    """The numeric flags given (None: the recipe's), checked before the demo data or any file is read."""
    runtime.check_positive(
        learning_rate=spec.learning_rate, train_batch_size=spec.train_batch_size,
        eval_batch_size=spec.eval_batch_size, num_train_steps=spec.num_train_steps,
        save_checkpoints_steps=spec.save_checkpoints_steps, max_eval_steps=spec.max_eval_steps,
        max_seq_length=spec.max_seq_length, max_predictions_per_seq=spec.max_predictions_per_seq,
        log_every_steps=spec.log_every_steps, steps_per_execution=spec.steps_per_execution,
        shuffle_buffer=spec.shuffle_buffer)
    runtime.check_non_negative(num_warmup_steps=spec.num_warmup_steps, weight_decay=spec.weight_decay)


def model_config(spec: JobSpec) -> GMLPConfig:
    """The model config named by --gmlp_config_file or --preset."""
    if spec.gmlp_config_file:
        return GMLPConfig.from_json_file(spec.gmlp_config_file)
    if spec.preset:
        return get_preset_config(spec.preset)
    raise ValueError("give the model: --gmlp_config_file or --preset")


def pretraining_setup(spec: JobSpec) -> recipe.PretrainingSetup:
    """The --setup recipe (ablation by default) with the flags that override it, checked."""
    base = recipe.SETUPS[spec.setup or "ablation"]
    overrides = {
        name: getattr(spec, name)
        for name in (f.name for f in dataclasses.fields(recipe.PretrainingSetup))
        if getattr(spec, name) is not None
    }
    setup = dataclasses.replace(base, **overrides)
    runtime.check_positive(**{name: getattr(setup, name) for name in (
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
    return TextFilesSource(files, spec.blank_line_documents)


def _dataset(job: ResolvedJob, source, is_training: bool, batch_size: int, input_context=None):
    setup = job.setup
    return make_pretraining_dataset(
        source, is_training=is_training, sp_model=job.sp_model, max_seq_length=setup.max_seq_length,
        max_predictions_per_seq=setup.max_predictions_per_seq, batch_size=batch_size,
        seed=job.spec.random_seed if is_training else None, input_context=input_context,
        shuffle_buffer=job.spec.shuffle_buffer, example_format=job.spec.example_format,
        short_seq_prob=job.spec.short_seq_prob,
    )


def eval_batch_size(job: ResolvedJob) -> int:
    return job.spec.eval_batch_size or job.setup.train_batch_size


def _distributed(strategy, job: ResolvedJob, source, is_training: bool, batch_size: int, skip: int = 0):
    """The strategy's per-replica batches of the stream without its first `skip` (global) batches.

    Across workers (multi_worker), every worker reads the global batches and takes its rows
    (runtime.custom_loop.distribute), so a cluster trains on exactly the batches one process would.
    """
    if runtime.is_multi_worker(strategy):
        return custom_loop.distribute(strategy, _dataset(job, source, is_training, batch_size).skip(skip).map(
            recipe.split_features))

    def dataset_fn(context):  # Skipped after masking, so a resumed run sees exactly the batches it had not.
        per_step = context.num_replicas_in_sync // context.num_input_pipelines  # This pipeline's batches a step.
        dataset = _dataset(job, source, is_training, batch_size, context)
        return dataset.skip(skip * per_step).map(recipe.split_features)

    return strategy.distribute_datasets_from_function(dataset_fn)


@runtime.releases_locks
def run(spec: JobSpec) -> Optional[Dict[str, Any]]:
    """Runs the job; returns the evaluation results (None without --do_eval, and on workers but the chief)."""
    job = resolve(spec)
    spec = job.spec
    strategy = runtime.start(spec)
    chief, multi_worker = runtime.is_chief(strategy), runtime.is_multi_worker(strategy)
    # Datasets first: they check the input files and TFDS names before anything is written.
    train_data = eval_data = None
    if spec.do_train:
        train_data = lambda skip: _distributed(  # noqa: E731
            strategy, job, job.train_source, True, job.setup.train_batch_size, skip)
        train_data(0)
    if spec.do_eval and not multi_worker:  # Across workers the chief evaluates alone, after training.
        eval_data = _distributed(strategy, job, job.eval_source, False, eval_batch_size(job))
    vocab = job.sp_model or (tokenization.load_sp_model(spec.vocab_file) if spec.vocab_file else None)
    runtime.prepare_output_dir(spec.output_dir, job.config, "pretraining", sp_model=vocab, strategy=strategy)
    logging.info("Model config:\n%s", job.config.to_json_string())
    logging.info("Setup: %s", job.setup)

    with strategy.scope():
        model = recipe.build_pretraining_model(
            job.config, job.setup, steps_per_execution=spec.steps_per_execution, weight_decay=spec.weight_decay
        )
    runtime.warm_start_unless_resuming(model, spec.init_checkpoint, spec.output_dir, job.config)
    if spec.do_train:
        _train(job, model, eval_data, train_data, chief)
    if not spec.do_eval or not chief:
        return None
    step = None
    if multi_worker:
        model, eval_data, step = _chief_evaluation(job)
    results = recipe.evaluate(model, eval_data, spec.max_eval_steps)
    results["global_step"] = results["global_step"] if step is None else step
    results.update(_unigram_baseline(job))
    runtime.write_results(spec.output_dir, results)
    return results


def _train(job: ResolvedJob, model, eval_data, train_data, chief: bool) -> None:
    spec = job.spec
    if chief:
        checkpointing.record_recipe(spec.output_dir, dict(
            dataclasses.asdict(job.setup), save_checkpoints_steps=job.save_checkpoints_steps,
            weight_decay=spec.weight_decay))
    evaluate_fn = None
    if eval_data is not None and spec.eval_at_checkpoints:
        evaluate_fn = lambda m: recipe.evaluate(m, eval_data, spec.max_eval_steps)  # noqa: E731
    recipe.train(model, train_data, spec.output_dir, job.setup.num_train_steps, job.save_checkpoints_steps,
                 log_every_steps=spec.log_every_steps, evaluate_fn=evaluate_fn)


def _chief_evaluation(job: ResolvedJob):
    """(model, eval data, step) on this process alone, with the run's last checkpoint: Keras evaluate
    cannot run under MultiWorkerMirroredStrategy."""
    model, step = recipe.evaluation_model(job.config, job.spec.output_dir)
    data = _dataset(job, job.eval_source, False, eval_batch_size(job)).map(recipe.split_features)
    return model, data, step


def _unigram_baseline(job: ResolvedJob) -> Dict[str, float]:
    """The unigram perplexity of the same held-out masked tokens (text sources only)."""
    if isinstance(job.train_source, TFRecordSource) or not job.sp_model:
        return {}
    value = unigram_perplexity(
        _dataset(job, job.train_source, True, 64),
        _dataset(job, job.eval_source, False, eval_batch_size(job)),
        vocab_size=job.config.vocab_size,
        max_train_batches=max(1, UNIGRAM_TRAIN_BATCHES * 128 // max(128, job.setup.max_seq_length)),
        max_eval_batches=job.spec.max_eval_steps,
    )
    return {"unigram_perplexity": value}


def report_lines(results: Optional[Dict[str, Any]], spec: Optional[JobSpec] = None) -> List[str]:
    """The lines the script prints at the end."""
    if not results:
        return []
    lines = runtime.result_lines(results)
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
