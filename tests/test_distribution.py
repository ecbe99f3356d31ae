"""A 2-replica MirroredStrategy forward and backward pass on logical CPU devices (see conftest)."""

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf.models.task_models import build_model


def test_mirrored_strategy_fit_on_two_replicas(tiny_text_config, two_replica_strategy):
    strategy = two_replica_strategy
    assert strategy.num_replicas_in_sync == 2
    config = tiny_text_config.replace(attention_size=4, survival_prob=0.9, hidden_dropout_prob=0.1)
    with strategy.scope():
        model = build_model(config, "classification", num_labels=2)
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    # Variables are mirrored: one copy per replica.
    assert isinstance(model.trainable_variables[0].value, tf.distribute.DistributedValues)
    n = 32
    x = {
        "input_ids": np.random.randint(1, 50, (n, 8)).astype("int32"),
        "segment_ids": np.zeros((n, 8), "int32"),
        "input_mask": np.ones((n, 8), "int32"),
    }
    y = (x["input_ids"][:, 1] > 25).astype("int32")
    before = [np.asarray(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    unchanged = [
        w.path for b, w in zip(before, model.trainable_weights) if np.allclose(b, np.asarray(w))
    ]
    # Every weight learned except the attention key bias, whose gradient is zero: softmax
    # ignores q . b_k, a constant across keys.
    assert all(path.endswith("attention/key/bias") for path in unchanged), unchanged
    assert model.predict(x, batch_size=8, verbose=0).shape == (n, 2)
