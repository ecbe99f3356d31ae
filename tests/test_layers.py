"""Every layer through the shared generic checks of tests/test_case.py, tiny shapes throughout.

Layer semantics live in test_spatial_projection.py, test_gmlp_block.py, test_baselines.py and
test_models.py.
"""

import keras
import numpy as np
import pytest
from test_case import run_layer_test

from gmlp_tf.config import GMLPConfig
from gmlp_tf.layers.baseline_blocks import MixerBlock, SelfAttention, TransformerBlock
from gmlp_tf.layers.drop_path import DropPath
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.layers.spatial_gating import SpatialGatingUnit
from gmlp_tf.layers.spatial_projection import SpatialProjection
from gmlp_tf.layers.tiny_attention import TinyAttention
from gmlp_tf.models.encoder import GMLPEncoder
from gmlp_tf.models.heads import ClassificationHead, MaskedLMHead, SpanHead

BATCH, N, SHORT, D_MODEL, D_FFN, VOCAB = 2, 6, 4, 8, 16, 50


def _floats(*shape):
    return np.random.randn(*shape).astype("float32")


def _mask(n):
    # The last token of the second example is padding.
    mask = np.ones((BATCH, n), "int32")
    mask[1, -1] = 0
    return mask


def _mask_kwargs(masked):
    """The call_kwargs and shorter_call_kwargs of run_layer_test: a padding mask, or nothing."""
    return ({"padding_mask": _mask(N)}, {"padding_mask": _mask(SHORT)}) if masked else ({}, {})


@pytest.mark.parametrize(
    "kind, causal, masked, implementation",
    [("dense", False, True, "auto"), ("toeplitz", False, False, "matmul"), ("toeplitz", True, False, "auto"),
     ("toeplitz", True, True, "fft"), ("toeplitz", False, False, "fft")],
)
def test_spatial_projection(kind, causal, masked, implementation):
    kwargs, short_kwargs = _mask_kwargs(masked)
    run_layer_test(
        SpatialProjection,
        {"max_length": N, "kind": kind, "causal": causal, "implementation": implementation},
        _floats(BATCH, N, 3),
        (BATCH, N, 3),
        call_kwargs=kwargs,
        shorter_input_data=_floats(BATCH, SHORT, 3),
        shorter_call_kwargs=short_kwargs,
        expected_shorter_output_shape=(BATCH, SHORT, 3),
    )


@pytest.mark.parametrize(
    "gating, masked", [("split", True), ("multiplicative", False), ("additive", False), ("linear", True)]
)
def test_spatial_gating_unit(gating, masked):
    # The mask acts in the spatial projection, whatever the gating: half the variants take one.
    width = D_FFN // 2 if gating == "split" else D_FFN

    def extras(n):
        # The masked case also carries aMLP's attention term into the gate.
        return {"padding_mask": _mask(n), "attention_output": _floats(BATCH, n, width)} if masked else {}

    run_layer_test(
        SpatialGatingUnit,
        {"max_length": N, "gating": gating, "spatial_kind": "toeplitz" if masked else "dense"},
        _floats(BATCH, N, D_FFN),
        (BATCH, N, width),
        call_kwargs=extras(N),
        shorter_input_data=_floats(BATCH, SHORT, D_FFN),
        shorter_call_kwargs=extras(SHORT),
        expected_shorter_output_shape=(BATCH, SHORT, width),
    )


def test_tiny_attention():
    # Causal and masked: the unmasked, non-causal path is the plain block's in test_gmlp_block.py.
    kwargs, short_kwargs = _mask_kwargs(True)
    run_layer_test(
        TinyAttention,
        {"attention_size": 4, "output_size": D_FFN // 2, "dropout": 0.1, "causal": True},
        _floats(BATCH, N, D_MODEL),
        (BATCH, N, D_FFN // 2),
        call_kwargs=kwargs,
        shorter_input_data=_floats(BATCH, SHORT, D_MODEL),
        shorter_call_kwargs=short_kwargs,
        expected_shorter_output_shape=(BATCH, SHORT, D_FFN // 2),
    )


def test_drop_path():
    run_layer_test(DropPath, {"rate": 0.5, "seed": 3}, _floats(BATCH, N, D_MODEL), (BATCH, N, D_MODEL))


def test_drop_path_drops_whole_examples_in_training_only():
    layer = DropPath(rate=0.5, seed=1)
    x = _floats(64, 3, 4)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    out = np.asarray(layer(x, training=True))
    dropped = np.all(out == 0.0, axis=(1, 2))
    assert 10 < dropped.sum() < 54
    np.testing.assert_allclose(out[~dropped], x[~dropped] / 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(rate=1.0)


@pytest.mark.parametrize(
    "block_kwargs, masked",
    [
        # gMLP, with dropout and stochastic depth.
        ({"dropout": 0.1, "survival_prob": 0.9}, False),
        # aMLP: tiny attention, causal, Toeplitz, padding mask.
        ({"attention_size": 4, "attention_dropout": 0.1, "causal": True, "spatial_kind": "toeplitz"}, True),
    ],
    ids=["gmlp", "amlp"],
)
def test_gmlp_block(block_kwargs, masked):
    kwargs, short_kwargs = _mask_kwargs(masked)
    run_layer_test(
        GMLPBlock,
        {"d_model": D_MODEL, "d_ffn": D_FFN, "max_length": N, **block_kwargs},
        _floats(BATCH, N, D_MODEL),
        (BATCH, N, D_MODEL),
        call_kwargs=kwargs,
        shorter_input_data=_floats(BATCH, SHORT, D_MODEL),
        shorter_call_kwargs=short_kwargs,
        expected_shorter_output_shape=(BATCH, SHORT, D_MODEL),
    )


@pytest.mark.parametrize(
    "attention_kwargs, masked",
    [
        # Content only, padding mask and probability dropout.
        ({"num_heads": 2, "dropout": 0.1}, True),
        # Content plus relative position bias, causal.
        ({"num_heads": 2, "relative_positions": True, "causal": True}, False),
        # The "rel pos - attn" baseline: relative bias alone, no q / k.
        ({"num_heads": 1, "relative_positions": True, "content": False}, True),
    ],
    ids=["content", "relative", "relative_no_content"],
)
def test_self_attention(attention_kwargs, masked):
    kwargs, short_kwargs = _mask_kwargs(masked)
    run_layer_test(
        SelfAttention,
        {"max_length": N, **attention_kwargs},
        _floats(BATCH, N, D_MODEL),
        (BATCH, N, D_MODEL),
        call_kwargs=kwargs,
        shorter_input_data=_floats(BATCH, SHORT, D_MODEL),
        shorter_call_kwargs=short_kwargs,
        expected_shorter_output_shape=(BATCH, SHORT, D_MODEL),
    )


@pytest.mark.parametrize(
    "block_kwargs, masked",
    [
        # Absolute positions live in the encoder: the block has only content attention.
        ({"num_heads": 2, "dropout": 0.1, "attention_dropout": 0.1, "survival_prob": 0.9}, True),
        ({"num_heads": 2, "relative_positions": True, "causal": True}, False),
        ({"num_heads": 2, "relative_positions": True, "attention_content": False}, True),
    ],
    ids=["content", "relative_causal", "relative_no_content"],
)
def test_transformer_block(block_kwargs, masked):
    kwargs, short_kwargs = _mask_kwargs(masked)
    run_layer_test(
        TransformerBlock,
        {"d_model": D_MODEL, "d_ffn": D_FFN, "max_length": N, **block_kwargs},
        _floats(BATCH, N, D_MODEL),
        (BATCH, N, D_MODEL),
        call_kwargs=kwargs,
        shorter_input_data=_floats(BATCH, SHORT, D_MODEL),
        shorter_call_kwargs=short_kwargs,
        expected_shorter_output_shape=(BATCH, SHORT, D_MODEL),
    )


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
def test_mixer_block(masked):
    kwargs, short_kwargs = _mask_kwargs(masked)
    run_layer_test(
        MixerBlock,
        {"d_model": D_MODEL, "d_ffn": D_FFN, "d_spatial": 5, "max_length": N, "dropout": 0.1, "survival_prob": 0.9},
        _floats(BATCH, N, D_MODEL),
        (BATCH, N, D_MODEL),
        call_kwargs=kwargs,
        shorter_input_data=_floats(BATCH, SHORT, D_MODEL),
        shorter_call_kwargs=short_kwargs,
        expected_shorter_output_shape=(BATCH, SHORT, D_MODEL),
    )


def _token_embedding():
    # As the encoder's: masked-LM logits stay float32 under mixed precision.
    return keras.layers.ReversibleEmbedding(
        VOCAB, D_MODEL, reverse_dtype="float32", name="token_embedding"
    )


@keras.saving.register_keras_serializable(package="gmlp_tf_tests")
class TiedMaskedLM(keras.Model):
    """Owns a token embedding and the MaskedLMHead tied to it and re-links them when restored,
    as GMLPForPretraining does: the head alone does not serialize the embedding it borrows."""

    def __init__(self, head_config=None, head=None, **kwargs):
        super().__init__(**kwargs)
        self.head = head if head is not None else MaskedLMHead(_token_embedding(), **head_config)

    def build(self, sequence_output_shape, masked_positions_shape=None):
        # A wrapped head arrives built; a restored one is built here, before its weights load.
        if not self.head.built:
            self.head.token_embedding.build()
            self.head.build(sequence_output_shape)

    def call(self, sequence_output, masked_positions=None):
        return self.head(sequence_output, masked_positions=masked_positions)

    def get_config(self):
        return {"head_config": self.head.get_config(), "name": self.name}


def test_masked_lm_head():
    positions = np.array([[0, 3, 5], [1, 1, 2]], "int32")
    run_layer_test(
        MaskedLMHead,
        {"layer_norm_eps": 1e-6, "initializer_range": 0.02},
        _floats(BATCH, N, D_MODEL),
        (BATCH, 3, VOCAB),
        call_kwargs={"masked_positions": positions},
        unserialized_kwargs=lambda: {"token_embedding": _token_embedding()},
        saving_model_fn=lambda head: TiedMaskedLM(head=head),
        shorter_input_data=_floats(BATCH, SHORT, D_MODEL),
        shorter_call_kwargs={"masked_positions": positions % SHORT},
        expected_shorter_output_shape=(BATCH, 3, VOCAB),
        expected_mixed_precision_dtype="float32",
    )


def test_classification_head():
    run_layer_test(
        ClassificationHead,
        {"num_labels": 3, "hidden_size": D_MODEL, "dropout": 0.1},
        _floats(BATCH, D_MODEL),
        (BATCH, 3),
        expected_mixed_precision_dtype="float32",
    )


def test_span_head():
    def shapes(n):
        return {"start_logits": (BATCH, n), "end_logits": (BATCH, n), "null_score": (BATCH,)}

    run_layer_test(
        SpanHead,
        {"initializer_range": 0.02},
        _floats(BATCH, N, D_MODEL),
        shapes(N),
        shorter_input_data=_floats(BATCH, SHORT, D_MODEL),
        expected_shorter_output_shape=shapes(SHORT),
        expected_mixed_precision_dtype="float32",
    )


def _text_inputs(n):
    return {
        "input_ids": np.random.randint(0, VOCAB, (BATCH, n)).astype("int32"),
        "segment_ids": np.repeat([[0] * (n // 2) + [1] * (n - n // 2)], BATCH, axis=0).astype("int32"),
        "input_mask": _mask(n),
    }


def test_encoder():
    # A Keras layer (the task models own one). The additive SGU and the aMLP path with padding
    # masks here; the task models' own round trips are in test_models.py.
    config = GMLPConfig(
        vocab_size=VOCAB, d_model=D_MODEL, d_ffn=D_FFN, num_layers=1, max_seq_length=N,
        gating="additive", attention_size=4, sgu_padding_mask=True, hidden_dropout_prob=0.1,
    )

    def shapes(n):
        return {"sequence_output": (BATCH, n, D_MODEL), "cls_output": (BATCH, D_MODEL)}

    run_layer_test(
        GMLPEncoder,
        {"config": config},
        _text_inputs(N),
        shapes(N),
        shorter_input_data=_text_inputs(SHORT),
        expected_shorter_output_shape=shapes(SHORT),
    )


def test_dtype_argument_reaches_sublayers():
    # A per-layer policy, not only the global one: every sublayer gets dtype=self.dtype_policy.
    block = GMLPBlock(D_MODEL, D_FFN, N, attention_size=4, dtype="mixed_bfloat16")
    assert block(_floats(BATCH, N, D_MODEL)).dtype == "bfloat16"
    assert {layer.dtype_policy.name for layer in block._flatten_layers()} == {"mixed_bfloat16"}
