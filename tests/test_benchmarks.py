"""The benchmark modules run and count FLOPs correctly (their figures are printed, never asserted here)."""

import re

import numpy as np
import pytest

from gmlp_tf.benchmarks import bert_peer, block_layout, common, inference, spatial_projection
from gmlp_tf.models.vision import GMLPVisionClassifier


def test_spatial_projection_benchmark_measures_both_paths_in_process():
    for implementation in spatial_projection.implementations("tensorflow"):
        figures = spatial_projection.measure(implementation, 32, 8, 1, jit_compile=False, causal=True)
        assert figures["seconds"] > 0 and figures["peak_bytes"] >= 0
    row = {"n": 32, "matmul": {"seconds": 0.02, "peak_bytes": 2**20}, "fft": {"seconds": 0.01, "peak_bytes": 2**20}}
    assert spatial_projection.format_row(row).endswith("2.00x")
    with pytest.raises(ValueError, match="comma-separated integers"):
        spatial_projection.run(spatial_projection.SpatialBenchmarkSpec(lengths="128,long"))
    with pytest.raises(ValueError, match="--backend must be one of tensorflow, jax, torch; got 'mxnet'"):
        spatial_projection.run(spatial_projection.SpatialBenchmarkSpec(lengths="128", backend="mxnet"))


def test_tokens_last_block_is_the_block_as_built():
    import tensorflow as tf

    from gmlp_tf.layers.gmlp_block import GMLPBlock

    block = GMLPBlock(8, 32, 24, spatial_kind="toeplitz", spatial_implementation="fft")
    block.build((None, 24, 8))
    rng = np.random.default_rng(0)
    for variable in block.weights:  # Every weight away from its initial value, so that none hides a slip.
        variable.assign(rng.standard_normal(variable.shape).astype("float32") * 0.3)
    x = tf.constant(rng.standard_normal((2, 24, 8)).astype("float32"))
    np.testing.assert_allclose(block_layout.tokens_last_call(block, x), block(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="split SGU with a Toeplitz W"):
        block_layout.tokens_last_call(GMLPBlock(8, 32, 24, spatial_kind="dense"), x)

    spec = spatial_projection.SpatialBenchmarkSpec(lengths="16", channels=8, block_layouts=True)
    row, = spatial_projection.run(spec)
    figures = row["block_layouts"]
    assert figures["tokens_first"] > 0 and figures["tokens_last"] > 0
    assert figures["max_relative_difference"] < 1e-5  # Outputs and gradients of the two layouts agree.
    assert "tokens-last gate" in "\n".join(spatial_projection.report_lines([row], spec))
    with pytest.raises(ValueError, match="--block_layouts times TensorFlow under XLA"):
        spatial_projection.run(spatial_projection.SpatialBenchmarkSpec(lengths="16", block_layouts=True, causal=True))


def test_peak_memory_reset_sees_a_new_allocation():
    before = common.reset_peak_memory()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched.
    assert common.current_peak_memory() - before >= 60 * 2**20
    del block


def test_inference_benchmark_times_predict_and_the_saved_model(tiny_image_config):
    model = GMLPVisionClassifier(tiny_image_config)
    assert model.jit_compile  # predict compiles with XLA, also on CPUs.
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    model.predict(images, verbose=0)
    assert inference.keras_predict_seconds(model, images, repeats=1) > 0
    assert inference.saved_model_seconds(model, images, repeats=1) > 0


def test_matmul_chain_has_the_models_matmuls(tiny_image_config):
    from gmlp_tf import counting

    chain, flops = inference.matmul_chain(tiny_image_config, batch_size=2)
    # 16 tokens of 8 * 8 * 3 pixels, d 16, U halves of 16, 2 blocks, 5 classes, by hand:
    # patches 2*16*192*16, each block 2*16*16*32 + 2*16*16*16 + 2*16*16*16, head 2*16*5.
    assert flops == 98_304 + 2 * 32_768 + 160
    assert flops == counting.count_flops(tiny_image_config)  # The FLOPs every "% of matmul" figure counts.
    out = chain()
    assert out.shape == (2, 5) and np.isfinite(out.numpy()).all()


def test_bert_flops_are_counted_per_layer_and_head():
    # One layer, d 4, d_ff 8, n 3, 2 predictions, vocabulary 10, by hand:
    # per token 4*16 + 2*4*8 + 2*3*4 = 152 multiply-adds; 3 tokens; head 2 * (16 + 40) = 112.
    assert bert_peer.bert_flops_per_example(1, 4, 8, 3, 2, 10) == 2 * (3 * 152 + 112)
    batch = {"input_ids": np.ones((1, 3), "int32"), "segment_ids": np.zeros((1, 3), "int32"),
             "input_mask": np.array([[1, 1, 0]], "int32"), "masked_lm_positions": np.ones((1, 2), "int32")}
    renamed = bert_peer.bert_batch(batch)
    assert renamed["padding_mask"].dtype == bool and renamed["padding_mask"].tolist() == [[True, True, False]]
    assert set(renamed) == {"token_ids", "segment_ids", "padding_mask", "mask_positions"}


def test_pretraining_benchmark_refuses_a_vocabulary_of_another_size(pretraining_files, monkeypatch):
    from gmlp_tf.benchmarks import pretraining

    def no_demo(*args, **kwargs):
        raise AssertionError("the demo corpus or vocabulary was fetched before the vocabulary was checked")

    monkeypatch.setattr(pretraining.demo_data, "fetch_demo_corpus", no_demo)
    monkeypatch.setattr(pretraining.demo_data, "demo_vocab", no_demo)
    vocab = str(pretraining_files / "spm.model")  # 120 pieces; the gmlp_demo preset has vocab_size 8000.
    for input_file in (None, str(pretraining_files / "train.txt")):
        spec = pretraining.BenchmarkSpec(preset="gmlp_demo", num_layers=1, vocab_file=vocab, input_file=input_file)
        message = f"vocabulary size mismatch: {re.escape(vocab)} has 120 pieces but the model config has vocab_size"
        with pytest.raises(ValueError, match=f"^{message} 8000$"):
            pretraining.run(spec)
