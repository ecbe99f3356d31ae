"""run_ablation.py --study=scaling, and the attention probe of the studies' Transformers."""

import json

import numpy as np
import pytest

from gmlp_tf import counting
from gmlp_tf.config import GMLPConfig
from gmlp_tf.studies import ablation

VOCAB = 120


def test_attention_statistics_measure_how_far_attention_is_from_uniform():
    from gmlp_tf.models.encoder import GMLPEncoder
    from gmlp_tf.studies import attention_probe

    config = GMLPConfig(vocab_size=VOCAB, d_model=16, d_ffn=32, num_layers=2, max_seq_length=8,
                        architecture="transformer", num_attention_heads=2, position_encoding="relative",
                        attention_size=0)
    encoder = GMLPEncoder(config)
    ids = np.arange(5, 21, dtype="int32").reshape(2, 8)
    mask = np.ones((2, 8), "int32")
    mask[1, 4:] = 0  # 8 and 4 real keys: uniform attention gives 1/8 and 1/4.
    inputs = {"input_ids": ids, "segment_ids": np.zeros_like(ids), "input_mask": mask}
    encoder(inputs)
    for block in encoder.blocks:  # No content term and no bias: every query attends uniformly.
        for projection in (block.attention.query, block.attention.key):
            projection.kernel.assign(np.zeros(projection.kernel.shape, "float32"))
        block.attention.relative_bias.assign(np.zeros(block.attention.relative_bias.shape, "float32"))
    stats = attention_probe.attention_statistics(encoder, inputs)
    uniform = (8 * (1 / 8) + 4 * (1 / 4)) / 12
    assert stats["attention/uniform_weight"] == pytest.approx(uniform)
    for layer in (0, 1):
        assert stats[f"attention/mean_peak_weight_{layer}"] == pytest.approx(uniform, rel=1e-5)
        assert stats[f"attention/max_weight_{layer}"] == pytest.approx(1 / 4, rel=1e-5)
        assert stats[f"attention/max_relative_bias_{layer}"] == 0
        assert stats[f"attention/mean_self_weight_{layer}"] == pytest.approx(uniform, rel=1e-5)
    # A bias of 5 on offset -1 (the previous token) in layer 1 only: each query but the first puts
    # e^5 / (e^5 + keys - 1) of its weight there.
    bias = np.zeros(encoder.blocks[1].attention.relative_bias.shape, "float32")
    bias[:, config.max_seq_length - 2] = 5.0
    encoder.blocks[1].attention.relative_bias.assign(bias)
    stats = attention_probe.attention_statistics(encoder, inputs)
    assert stats["attention/max_relative_bias_1"] == pytest.approx(5.0)
    assert stats["attention/mean_peak_weight_0"] == pytest.approx(uniform, rel=1e-5)
    e = np.exp(5.0)
    expected = (1 / 8 + 7 * e / (e + 7) + 1 / 4 + 3 * e / (e + 3)) / 12
    assert stats["attention/mean_peak_weight_1"] == pytest.approx(expected, rel=1e-5)
    assert stats["attention/max_weight_1"] == pytest.approx(e / (e + 3), rel=1e-5)
    # Offset -1 is another token: each query's own position keeps 1 / (e^5 + keys - 1) (the first: 1 / keys).
    expected_self = (1 / 8 + 7 / (e + 7) + 1 / 4 + 3 / (e + 3)) / 12
    assert stats["attention/mean_self_weight_1"] == pytest.approx(expected_self, rel=1e-5)


def test_scaling_depths_and_slopes():
    from gmlp_tf.studies import scaling

    assert scaling.parse_depths(None) == list(scaling.DEMO_DEPTHS)
    assert scaling.parse_depths("8,2,4") == [2, 4, 8]
    for text in ("4", "4,4", "0,2", "2,x"):
        with pytest.raises(ValueError, match="--scaling_depths"):
            scaling.parse_depths(text)
    # ppl = 100 * params^-0.1: ln(ppl) falls by 0.1 ln 2 per doubling.
    rows = [{"block_parameters": p, "train_flops": 3 * p, "perplexity": 100 * p ** -0.1} for p in (1e6, 2e6, 8e6)]
    assert scaling.slopes(rows)["per_doubling_parameters"] == pytest.approx(-0.1 * np.log(2))
    assert scaling.slopes(rows)["per_doubling_train_flops"] == pytest.approx(-0.1 * np.log(2))
    assert scaling.slopes(rows[:1]) == {"per_doubling_parameters": None, "per_doubling_train_flops": None}
    with pytest.raises(ValueError, match="--study=scaling only"):
        ablation.run_study(ablation.AblationSpec(scaling_depths="2,4", output_dir="x"))


def test_tiny_scaling_study_end_to_end(study_corpus, tmp_path):
    from gmlp_tf.studies import scaling

    spec = ablation.AblationSpec(
        study="scaling", scaling_depths="1,2", variants="gmlp_split,transformer",
        input_file=str(study_corpus / "train.txt"), eval_input_file=str(study_corpus / "eval.txt"),
        vocab_file=str(study_corpus / "spm.model"), gmlp_config_file=str(study_corpus / "base.json"),
        output_dir=str(tmp_path), max_seq_length=16, max_predictions_per_seq=3, train_batch_size=8,
        eval_batch_size=8, learning_rate=5e-3, num_train_steps=2, log_every_steps=1, max_eval_steps=1,
        jit_compile=False, shuffle_buffer=64, example_format="packed",
    )
    summary = ablation.run_study(spec)
    assert summary["study"] == "scaling"
    rows = summary["variants"]
    assert [(r["gmlp_depth"], r["variant"]) for r in rows] == [
        (1, "gmlp_split"), (1, "transformer"), (2, "gmlp_split"), (2, "transformer")]
    for row in rows:
        run_dir = tmp_path / f"{row['variant']}_gmlp_depth_{row['gmlp_depth']}"
        config = GMLPConfig.from_json_file(str(run_dir / "gmlp_config.json"))
        assert row["parameters"] == counting.count_parameters(config) and row["steps"] == 2
        assert row["block_parameters"] == config.num_layers * counting.block_parameters(config)
        assert row["train_flops"] == pytest.approx(3 * counting.count_flops(config) * 8 * 2)
        results = json.loads((run_dir / "eval_results.json").read_text())
        assert row["perplexity"] == pytest.approx(results["perplexity"])
    assert [r["num_layers"] for r in rows if r["variant"] == "gmlp_split"] == [1, 2]
    for name in ("gmlp_split", "transformer"):
        mine = [r for r in rows if r["variant"] == name]
        assert summary["slopes"][name] == scaling.slopes(mine)
    on_disk = json.loads((tmp_path / "scaling.json").read_text())
    assert on_disk["slopes"] == json.loads(json.dumps(summary["slopes"]))
    assert "| 2 | transformer |" in (tmp_path / "scaling.md").read_text()
    for png in ("scaling_params.png", "scaling_flops.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
