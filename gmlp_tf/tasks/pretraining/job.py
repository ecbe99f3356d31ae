"""One run_pretraining.py job: resolve its inputs, check them, train, evaluate, report.

The script turns its flags into a JobSpec (one field per flag) and calls `run`; everything that
can be checked is checked before any work starts, so bad input costs one clear error line.
"""

import dataclasses
from typing import Optional

import keras
from absl import logging

from gmlp_tf import tokenization
from gmlp_tf.runtime import checkpointing
from gmlp_tf.tasks.pretraining import demo_data as demo_corpus
from gmlp_tf.tasks.pretraining import recipe as pretraining
from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime.flags import CommonSpec
from gmlp_tf.runtime.distribution import get_strategy
from gmlp_tf.tasks.pretraining.data import (
    TextFilesSource,
    TfdsSource,
    TFRecordSource,
    expand_patterns,
    make_pretraining_dataset,
    unigram_perplexity,
)
from gmlp_tf.presets import get_preset_config

DEMO_PRESET = "gmlp_demo"
# Training batches counted for the unigram baseline (enough for stable frequencies).
UNIGRAM_TRAIN_BATCHES = 200


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_pretraining.py (see the script for their help)."""

    gmlp_config_file: Optional[str] = None
    preset: Optional[str] = None
    setup: Optional[str] = None
    input_file: Optional[str] = None
    eval_input_file: Optional[str] = None
    input_format: str = "text"
    blank_line_documents: bool = False
    tfds_name: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    tfds_train_split: str = "train"
    tfds_eval_split: str = "validation"
    tfds_text_key: str = "text"
    tfds_download: bool = False
    vocab_file: Optional[str] = None
    max_seq_length: Optional[int] = None
    max_predictions_per_seq: Optional[int] = None
    train_batch_size: Optional[int] = None
    eval_batch_size: int = 32
    learning_rate: Optional[float] = None
    num_train_steps: Optional[int] = None
    num_warmup_steps: Optional[int] = None
    weight_decay: float = 0.01
    save_checkpoints_steps: Optional[int] = None
    max_eval_steps: Optional[int] = None
    do_train: bool = True
    do_eval: bool = True
    random_seed: int = 12345

    @property
    def is_demo(self):
        """No data given: the embedded demo on the cached Shakespeare corpus."""
        return not (self.input_file or self.tfds_name)


@dataclasses.dataclass
class ResolvedJob:
    """A JobSpec with every default filled in and every input checked."""

    spec: JobSpec
    config: GMLPConfig
    setup: pretraining.PretrainingSetup
    output_dir: str
    save_checkpoints_steps: int
    train_source: object
    eval_source: object
    sp_model: Optional[bytes]
    vocab_file: Optional[str]


def resolve(spec: JobSpec, demo_output_dir: str) -> ResolvedJob:
    """Fills in defaults (the demo's when no data is given) and checks every input.

    Raises:
      ValueError: naming the first problem found.
    """
    if spec.gmlp_config_file and spec.preset:
        raise ValueError("give --gmlp_config_file or --preset, not both")
    if spec.input_file and spec.tfds_name:
        raise ValueError("give --input_file or --tfds_name, not both")
    if spec.is_demo:
        corpus = demo_corpus.fetch_demo_corpus()
        spec = dataclasses.replace(
            spec,
            input_file=",".join(corpus.train_files),
            eval_input_file=",".join(corpus.eval_files),
            blank_line_documents=corpus.blank_line_documents,
            vocab_file=spec.vocab_file or demo_corpus.demo_vocab(),
            preset=spec.preset or (None if spec.gmlp_config_file else DEMO_PRESET),
            setup=spec.setup or "demo",
            output_dir=spec.output_dir or demo_output_dir,
            save_checkpoints_steps=spec.save_checkpoints_steps or 500,
        )
    if not spec.output_dir:
        raise ValueError("--output_dir is required")
    config = _model_config(spec)
    setup = _setup(spec)
    if setup.max_seq_length > config.max_seq_length:
        raise ValueError(
            f"max_seq_length {setup.max_seq_length} exceeds the model config's max_seq_length "
            f"{config.max_seq_length}"
        )
    if config.modality != "text":
        raise ValueError("masked-LM pretraining needs a text model config, got an image one")
    sp_model = None
    if spec.input_format == "text" or spec.tfds_name:
        if not spec.vocab_file:
            raise ValueError("--vocab_file (a SentencePiece model from create_vocab.py) is required")
        sp_model = tokenization.load_model_vocab(spec.vocab_file, config.vocab_size)
    train_source, eval_source = _sources(spec)
    steps = spec.save_checkpoints_steps or min(1000, setup.num_train_steps)
    if setup.num_train_steps % steps:
        raise ValueError(
            f"num_train_steps ({setup.num_train_steps}) must be a multiple of save_checkpoints_steps ({steps})"
        )
    return ResolvedJob(spec, config, setup, spec.output_dir, steps, train_source, eval_source, sp_model, spec.vocab_file)


def _model_config(spec):
    if spec.gmlp_config_file:
        return GMLPConfig.from_json_file(spec.gmlp_config_file)
    if spec.preset:
        return get_preset_config(spec.preset)
    raise ValueError("give the model: --gmlp_config_file or --preset")


def _setup(spec):
    base = pretraining.SETUPS[spec.setup or "ablation"]
    overrides = {
        name: getattr(spec, name)
        for name in (f.name for f in dataclasses.fields(pretraining.PretrainingSetup))
        if getattr(spec, name) is not None
    }
    setup = dataclasses.replace(base, **overrides)
    for name in ("max_seq_length", "max_predictions_per_seq", "train_batch_size", "num_train_steps"):
        if getattr(setup, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(setup, name)}")
    if setup.num_warmup_steps > setup.num_train_steps:
        raise ValueError(
            f"--num_warmup_steps ({setup.num_warmup_steps}) exceeds --num_train_steps ({setup.num_train_steps})"
        )
    return setup


def _sources(spec):
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


def _file_source(spec, files):
    if spec.input_format == "tfrecord":
        return TFRecordSource(files)
    return TextFilesSource(files, spec.blank_line_documents)


def _distributed(strategy, job, source, is_training, batch_size):
    setup = job.setup

    def dataset_fn(context):
        dataset = make_pretraining_dataset(
            source,
            is_training=is_training,
            sp_model=job.sp_model,
            max_seq_length=setup.max_seq_length,
            max_predictions_per_seq=setup.max_predictions_per_seq,
            batch_size=batch_size,
            seed=job.spec.random_seed if is_training else None,
            input_context=context,
        )
        return dataset.map(pretraining.split_features)

    return strategy.distribute_datasets_from_function(dataset_fn)


def run(spec: JobSpec, demo_output_dir: str):
    """Runs the job; returns the evaluation results (None without --do_eval)."""
    job = resolve(spec, demo_output_dir)
    keras.utils.set_random_seed(spec.random_seed)
    keras.mixed_precision.set_global_policy(spec.precision)
    strategy = get_strategy(spec.strategy, spec.tpu, spec.tpu_zone, spec.gcp_project)
    # Datasets first: they check the input files and TFDS names before anything is written.
    train_data = eval_data = None
    if spec.do_train:
        train_data = _distributed(strategy, job, job.train_source, True, job.setup.train_batch_size)
    if spec.do_eval:
        eval_data = _distributed(strategy, job, job.eval_source, False, spec.eval_batch_size)
    checkpointing.prepare_output_dir(job.output_dir, job.config, "pretraining")
    if job.vocab_file:  # Finetuning and export find the vocabulary beside the checkpoint.
        checkpointing.write_vocab(job.output_dir, job.sp_model or tokenization.load_sp_model(job.vocab_file))
    logging.info("Model config:\n%s", job.config.to_json_string())
    logging.info("Setup: %s", job.setup)

    with strategy.scope():
        model = pretraining.build_pretraining_model(
            job.config, job.setup, steps_per_execution=spec.steps_per_execution, weight_decay=spec.weight_decay
        )
    if spec.init_checkpoint and not checkpointing.latest_weights(job.output_dir):
        checkpointing.warm_start(model, spec.init_checkpoint, job.config)
    elif spec.init_checkpoint:
        logging.info("Ignoring --init_checkpoint: %s already holds a checkpoint to resume", job.output_dir)

    if spec.do_train:
        pretraining.train(model, train_data, job.output_dir, job.setup.num_train_steps, job.save_checkpoints_steps)
    if not spec.do_eval:
        return None
    results = pretraining.evaluate(model, eval_data, spec.max_eval_steps)
    results.update(_unigram_baseline(job, spec))
    pretraining.write_eval_results(job.output_dir, results)
    return results


def _unigram_baseline(job, spec):
    """The unigram perplexity of the same held-out masked tokens (text sources only)."""
    if isinstance(job.train_source, TFRecordSource) or not job.sp_model:
        return {}

    def local(source, is_training, batch_size):
        return make_pretraining_dataset(
            source,
            is_training=is_training,
            sp_model=job.sp_model,
            max_seq_length=job.setup.max_seq_length,
            max_predictions_per_seq=job.setup.max_predictions_per_seq,
            batch_size=batch_size,
            seed=spec.random_seed if is_training else None,
        )

    value = unigram_perplexity(
        local(job.train_source, True, 64),
        local(job.eval_source, False, spec.eval_batch_size),
        vocab_size=job.config.vocab_size,
        max_train_batches=UNIGRAM_TRAIN_BATCHES,
        max_eval_batches=spec.max_eval_steps,
    )
    return {"unigram_perplexity": value}


def report_lines(results):
    """The lines the script prints at the end."""
    lines = [f"{key} = {results[key]}" for key in sorted(results)]
    if "unigram_perplexity" in results:
        lines.append(
            f"Held-out masked-LM perplexity {results['perplexity']:.2f} vs unigram perplexity "
            f"{results['unigram_perplexity']:.2f} on the same tokens "
            f"({results['unigram_perplexity'] / results['perplexity']:.1f}x lower)"
        )
    return lines

