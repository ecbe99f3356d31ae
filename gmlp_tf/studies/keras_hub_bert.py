"""keras-hub's BERT as an external reference row of the ablation: the same pretraining job, its model.

The run is an ordinary pretraining run (the same batches, recipe, optimizer, checkpoints and held-out
evaluation as every other variant); only the model differs: keras_hub.models.BertBackbone plus its
MaskedLMHead, sized from the ablation's `transformer` config (d_model, 64-wide heads, a 4 x d_model
FFN, the depth matched to gMLP's parameters). So a reader can check that the project's own
Transformer is not handicapped by its code.

keras-hub is not a dependency of the library: `pip install ".[bench]"` adds it.
"""

import keras
from keras import ops

from gmlp_tf.benchmarks import bert_peer
from gmlp_tf.config import GMLPConfig
from gmlp_tf.tasks.pretraining.metrics import masked_lm_loss, masked_lm_metrics
from gmlp_tf.tasks.pretraining.task import PretrainingTask

INSTALL_HINT = 'keras-hub is not installed: pip install ".[bench]"'


def check_available() -> None:
    """Raises ImportError with the install line when keras-hub is missing."""
    if not bert_peer.keras_hub_available():
        raise ImportError(INSTALL_HINT)


def masked_lm_model(config: GMLPConfig, max_predictions_per_seq: int) -> keras.Model:
    """keras-hub's BERT masked LM with the project's pretraining inputs.

    Inputs: input_ids, input_mask, segment_ids int32 [batch, n] (n <= config.seq_length) and
    masked_lm_positions int32 [batch, max_predictions_per_seq], as the pretraining pipeline
    makes them. Output: logits [batch, max_predictions_per_seq, config.vocab_size], as the
    project's pretraining model gives them, so the same loss and metrics apply.
    """
    check_available()
    if config.d_model % config.num_attention_heads:
        raise ValueError(f"d_model {config.d_model} is not a multiple of {config.num_attention_heads} heads")
    bert = bert_peer.build_bert_masked_lm(
        config.vocab_size, config.num_layers, config.num_attention_heads, config.d_model, config.d_ffn,
        config.seq_length, max_predictions_per_seq, dropout=config.hidden_dropout_prob)
    inputs = {name: keras.Input((None,), dtype="int32", name=name)
              for name in ("input_ids", "input_mask", "segment_ids")}
    inputs["masked_lm_positions"] = keras.Input((max_predictions_per_seq,), dtype="int32",
                                                name="masked_lm_positions")
    logits = bert({"token_ids": inputs["input_ids"], "segment_ids": inputs["segment_ids"],
                   "padding_mask": ops.cast(inputs["input_mask"], "bool"),
                   "mask_positions": inputs["masked_lm_positions"]})
    return keras.Model(inputs, logits, name="keras_hub_bert_masked_lm")


def trained_parameters(config: GMLPConfig) -> int:
    """Parameters of masked_lm_model(config) that pretraining trains: all but BERT's pooler, which
    the masked-LM loss never reaches (keras-hub builds it for next-sentence prediction)."""
    model = masked_lm_model(config, 1)
    return sum(int(v.numpy().size) for v in model.trainable_variables if "pooled_dense" not in v.path)


class KerasHubBertPretraining(PretrainingTask):
    """The pretraining task with keras-hub's BERT as the model (see the module docstring).

    Its run directory records the task "pretraining_keras_hub_bert", so neither a gMLP run nor a
    finetuning script takes its checkpoints for a gMLP encoder's.
    """

    model_task = "pretraining_keras_hub_bert"

    def build_model(self) -> keras.Model:
        model = masked_lm_model(self.config, self.recipe_values.max_predictions_per_seq)
        model.compile(loss=masked_lm_loss(), weighted_metrics=masked_lm_metrics())
        return model
