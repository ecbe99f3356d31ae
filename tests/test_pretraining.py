"""Training side of run_pretraining: optimizer, loss, metrics, checkpoints, resume, warm start."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import run_directory, training
from gmlp_tf.runtime.distribution import get_strategy
from gmlp_tf.runtime.optimization import create_optimizer, learning_rate_schedule
from gmlp_tf.tasks.pretraining import metrics
from gmlp_tf.tasks.pretraining import recipe as pretraining

VOCAB, SEQ, PREDS = 40, 16, 3


def counting_features(num_examples, seed=0):
    """Sequences t, t+1, t+2, ... (mod VOCAB, above the 5 special ids) with 3 masked positions.

    Start tokens are skewed (geometric), so token frequencies are too: a model learns that
    quickly, and the neighbours give away the masked token for those that learn more."""
    rng = np.random.default_rng(seed)
    starts = np.minimum(rng.geometric(0.3, num_examples) - 1, VOCAB - 6)
    ids = (starts[:, None] + np.arange(SEQ)[None, :]) % (VOCAB - 5) + 5
    ids[:, 0] = 2  # [CLS]
    positions = np.stack([rng.choice(np.arange(1, SEQ), PREDS, replace=False) for _ in range(num_examples)])
    labels = np.take_along_axis(ids, positions, axis=1)
    masked = ids.copy()
    np.put_along_axis(masked, positions, 4, axis=1)  # [MASK]
    weights = np.ones((num_examples, PREDS), "float32")
    weights[:, -1] = rng.integers(0, 2, num_examples)  # Some padding predictions.
    return {
        "input_ids": masked.astype("int32"),
        "input_mask": np.ones_like(masked, "int32"),
        "segment_ids": np.zeros_like(masked, "int32"),
        "masked_lm_positions": positions.astype("int32"),
        "masked_lm_ids": labels.astype("int32"),
        "masked_lm_weights": weights,
    }


def dataset(features, batch_size=8, repeat=True):
    ds = tf.data.Dataset.from_tensor_slices(features)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=True).map(pretraining.split_features)


CONFIG = GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=64, num_layers=2, max_seq_length=SEQ)
SETUP = pretraining.PretrainingRecipe(SEQ, PREDS, 8, 1e-2, 40, 4)


def test_warmup_then_linear_decay():
    schedule = learning_rate_schedule(1.0, num_train_steps=110, num_warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0], abs=1e-6)
    cosine = learning_rate_schedule(1.0, 110, 10, decay="cosine")
    assert float(cosine(60)) == pytest.approx(0.5, abs=1e-6)


def test_adamw_excludes_bias_and_layernorm_from_weight_decay():
    model = build_model(CONFIG, "pretraining")
    optimizer = create_optimizer(1e-3, 100, 10, weight_decay=0.01)
    optimizer.build(model.trainable_variables)
    decayed = {v.path.split("/")[-1] for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert decayed == {"kernel", "embeddings"}
    assert optimizer.epsilon == 1e-6 and optimizer.beta_2 == 0.999


def test_loss_is_weighted_mean_and_perplexity_its_exponential():
    labels = np.array([[1, 2, 3]])
    logits = np.log(np.array([[[0.1, 0.5, 0.4, 0.0], [0.2, 0.2, 0.6, 0.0], [0.25] * 4]]) + 1e-30)
    weights = np.array([[1.0, 1.0, 0.0]])
    loss = float(metrics.masked_lm_loss()(labels, logits, sample_weight=weights))
    expected = -(np.log(0.5) + np.log(0.6)) / 2
    assert loss == pytest.approx(expected, rel=1e-5)
    metric = metrics.MaskedLMPerplexity()
    metric.update_state(labels, logits, sample_weight=weights)
    assert float(metric.result()) == pytest.approx(np.exp(expected), rel=1e-5)


def test_tiny_run_loss_goes_down_and_writes_results(tmp_path):
    output_dir = str(tmp_path)
    run_directory.prepare_output_dir(output_dir, CONFIG, "pretraining")
    model = pretraining.build_pretraining_model(CONFIG, SETUP)
    eval_ds = dataset(counting_features(64, seed=1), repeat=False)
    before = pretraining.evaluate(model, eval_ds)
    history = training.fit_resumable(model, dataset(counting_features(256)).skip, output_dir, 40, 10, verbose=0,
                                log_every_steps=5, evaluate_fn=lambda m: pretraining.evaluate(m, eval_ds))
    losses = history.history["loss"]
    after = pretraining.evaluate(model, eval_ds)
    assert losses[-1] < losses[0] * 0.9
    assert after["perplexity"] < before["perplexity"] * 0.8
    assert after["global_step"] == 40
    path = run_directory.write_results(output_dir, after)
    assert "perplexity = " in open(path).read()
    assert saved_runs.latest_weights(output_dir)
    # TensorBoard: training scalars every 5 global steps, held-out ones at every checkpoint.
    train_logs = training.read_scalars(os.path.join(output_dir, "logs", "train"))
    eval_logs = training.read_scalars(os.path.join(output_dir, "logs", "eval"))
    assert [step for step, _ in train_logs["loss"]] == list(range(5, 45, 5))
    assert {"learning_rate", "masked_lm_accuracy", "perplexity"} <= set(train_logs)
    schedule = learning_rate_schedule(SETUP.learning_rate, 40, SETUP.num_warmup_steps)
    for step, value in train_logs["learning_rate"]:
        assert value == pytest.approx(float(schedule(step)), rel=1e-5, abs=1e-9)
    assert [step for step, _ in eval_logs["perplexity"]] == [10, 20, 30, 40]
    assert eval_logs["perplexity"][-1][1] == pytest.approx(after["perplexity"], rel=1e-5)
    assert "global_step" not in eval_logs


def test_evaluation_loss_is_the_log_of_its_perplexity_over_exactly_the_batches_read():
    model = pretraining.build_pretraining_model(CONFIG, SETUP)
    # Batches with different numbers of real predictions: a mean of per-batch means would differ.
    features = counting_features(40, seed=3)
    features["masked_lm_weights"][:16] = 0.0
    features["masked_lm_weights"][:16, 0] = 1.0
    eval_ds = dataset(features, repeat=False)  # 5 batches of 8.
    whole = pretraining.evaluate(model, eval_ds)
    assert whole["eval_batches"] == 5
    assert whole["loss"] == pytest.approx(np.log(whole["perplexity"]), rel=1e-5)
    logits = model.predict(eval_ds.map(lambda x, y, w: x), verbose=0)
    ce = keras.losses.sparse_categorical_crossentropy(features["masked_lm_ids"], logits, from_logits=True).numpy()
    weights = features["masked_lm_weights"]
    assert whole["loss"] == pytest.approx(float((ce * weights).sum() / weights.sum()), rel=1e-4)
    assert pretraining.evaluate(model, eval_ds, max_eval_steps=2)["eval_batches"] == 2
    assert pretraining.evaluate(model, eval_ds, max_eval_steps=50)["eval_batches"] == 5


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) >= self.at_step:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_at_the_saved_step(tmp_path, monkeypatch):
    output_dir = str(tmp_path)
    run_directory.prepare_output_dir(output_dir, CONFIG, "pretraining")
    model = pretraining.build_pretraining_model(CONFIG, SETUP)
    original_fit = model.fit
    monkeypatch.setattr(model, "fit",
                        lambda *a, **k: original_fit(*a, **dict(k, callbacks=k["callbacks"] + [_Interrupt(15)])))
    with pytest.raises(KeyboardInterrupt):
        training.fit_resumable(model, dataset(counting_features(128)).skip, output_dir, 40, 10, verbose=0,
                               log_every_steps=5)
    saved = build_model(CONFIG, "pretraining")
    saved.load_weights(saved_runs.latest_weights(output_dir))
    # A fresh process: new model and optimizer, same output_dir.
    resumed = pretraining.build_pretraining_model(CONFIG, SETUP)
    starts = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not starts:
                starts.append(int(self.model.optimizer.iterations))
                np.testing.assert_array_equal(  # Weights are those of step 10, not fresh ones.
                    np.asarray(self.model.encoder.blocks[0].proj_in.kernel),
                    np.asarray(saved.encoder.blocks[0].proj_in.kernel),
                )

    original_resumed_fit = resumed.fit
    monkeypatch.setattr(resumed, "fit",
                        lambda *a, **k: original_resumed_fit(*a, **dict(k, callbacks=k["callbacks"] + [Record()])))
    history = training.fit_resumable(resumed, dataset(counting_features(128)).skip, output_dir, 40, 10, verbose=0,
                                log_every_steps=5)
    assert starts == [10]  # The checkpoint of step 10; step 15 was never saved.
    assert len(history.history["loss"]) == 3 and int(resumed.optimizer.iterations) == 40
    # The resumed run continues the same TensorBoard curve by global step, each step once.
    steps = [step for step, _ in training.read_scalars(os.path.join(output_dir, "logs", "train"))["loss"]]
    assert steps == list(range(5, 45, 5))


def test_warm_start_restores_encoder_and_reports_new_head(tmp_path):
    output_dir = str(tmp_path)
    run_directory.prepare_output_dir(output_dir, CONFIG, "pretraining")
    model = pretraining.build_pretraining_model(CONFIG, SETUP)
    training.fit_resumable(model, dataset(counting_features(64)).skip, output_dir, 10, 10, verbose=0)
    finetune = build_model(CONFIG.replace(hidden_dropout_prob=0.1), "classification", num_labels=3)
    restored, new = saved_runs.warm_start(finetune, output_dir, CONFIG.replace(hidden_dropout_prob=0.1))
    assert "encoder/block_1/sgu/proj/kernel" in restored and all(k.startswith("encoder/") for k in restored)
    assert sorted(new) == sorted(v.path.split("/", 1)[1] for v in finetune.classifier.weights)
    np.testing.assert_array_equal(
        np.asarray(finetune.encoder.blocks[1].sgu.proj.kernel), np.asarray(model.encoder.blocks[1].sgu.proj.kernel)
    )
    with pytest.raises(ValueError, match="model config does not match.*d_ffn: checkpoint 64 vs config 128"):
        saved_runs.warm_start(finetune, output_dir, CONFIG.replace(d_ffn=128))
    with pytest.raises(ValueError, match="nothing is not a directory"):
        saved_runs.warm_start(finetune, str(tmp_path / "nothing"), CONFIG)


def test_output_dir_refuses_a_different_config(tmp_path):
    run_directory.prepare_output_dir(str(tmp_path), CONFIG, "pretraining")
    with pytest.raises(ValueError, match="num_layers: checkpoint 2 vs config 3"):
        run_directory.prepare_output_dir(str(tmp_path), CONFIG.replace(num_layers=3), "pretraining")


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is not writable"):
        run_directory.prepare_output_dir(str(blocker / "sub"), CONFIG, "pretraining")


def test_mirrored_two_replica_pretraining(tmp_path, two_replica_strategy):
    strategy = two_replica_strategy
    features = counting_features(128)

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(16)
        ds = tf.data.Dataset.from_tensor_slices(features).shard(context.num_input_pipelines, context.input_pipeline_id)
        return ds.repeat().batch(per_replica, drop_remainder=True).map(pretraining.split_features)

    with strategy.scope():
        model = pretraining.build_pretraining_model(CONFIG, SETUP)
    run_directory.prepare_output_dir(str(tmp_path), CONFIG, "pretraining")
    history = training.fit_resumable(
        model, lambda skip: strategy.distribute_datasets_from_function(lambda c: dataset_fn(c).skip(skip)),
        str(tmp_path), 20, 10, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert training.global_step(model) == 20


def test_strategy_choices(caplog):
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("parameter_server")
    with pytest.raises(ValueError, match="needs --tpu"):
        get_strategy("tpu")
    assert get_strategy("one_device").num_replicas_in_sync == 1
    mirrored = get_strategy("mirrored")  # Over the two logical CPUs of conftest.
    assert isinstance(mirrored, tf.distribute.MirroredStrategy) and mirrored.num_replicas_in_sync == 2
    assert any("--strategy=mirrored found no GPU" in r.getMessage() for r in caplog.records)  # Said, not silent.


def test_mixed_bfloat16_and_steps_per_execution(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = pretraining.build_pretraining_model(CONFIG, SETUP, steps_per_execution=5)
        assert model.encoder.blocks[0].proj_in.compute_dtype == "bfloat16"
        assert model.encoder.blocks[0].proj_in.kernel.dtype == "float32"  # Variables stay float32.
        inputs, _, _ = pretraining.split_features({k: v[:2] for k, v in counting_features(2).items()})
        assert model(inputs).dtype == "float32"  # Logits (and so the loss) in float32.
        run_directory.prepare_output_dir(str(tmp_path), CONFIG, "pretraining")
        history = training.fit_resumable(model, dataset(counting_features(128)).skip, str(tmp_path), 20, 10, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))
    assert training.global_step(model) == 20
