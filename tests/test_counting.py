"""Parameter and FLOP counts: closed forms against real builds and against the paper."""

import pytest

from gmlp_tf import counting, presets, summary
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model


@pytest.mark.parametrize("spatial_kind", ["dense", "toeplitz"])
@pytest.mark.parametrize("gating", ["split", "multiplicative", "additive", "linear"])
@pytest.mark.parametrize("attention_size", [0, 4])
@pytest.mark.parametrize("task", ["pretraining", "classification", "squad", "encoder"])
def test_closed_form_matches_keras_for_text_models(spatial_kind, gating, attention_size, task):
    config = GMLPConfig(
        vocab_size=37, d_model=8, d_ffn=12, num_layers=2, max_seq_length=5,
        spatial_kind=spatial_kind, gating=gating, attention_size=attention_size,
    )
    model = build_model(config, task, num_labels=3)
    assert model.count_params() == counting.count_parameters(config, task, num_labels=3)


# The Table 3 baselines: absolute position embeddings, relative biases (with and without the
# content term, whose q / k projections then go) and the Mixer's token MLP.
BASELINES = {
    "transformer_absolute": dict(architecture="transformer", num_attention_heads=2, position_encoding="absolute"),
    "transformer_relative": dict(architecture="transformer", num_attention_heads=2, position_encoding="relative"),
    "transformer_relative_no_content": dict(
        architecture="transformer", num_attention_heads=2, position_encoding="relative", attention_content=False
    ),
    "mlp_mixer": dict(architecture="mlp_mixer", d_spatial=3),
}


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("task", ["pretraining", "encoder"])
def test_closed_form_matches_keras_for_baselines(name, task):
    config = GMLPConfig(vocab_size=37, d_model=8, d_ffn=12, num_layers=2, max_seq_length=5, **BASELINES[name])
    assert build_model(config, task).count_params() == counting.count_parameters(config, task)


def test_closed_form_matches_keras_for_vision(tiny_image_config):
    assert build_model(tiny_image_config).count_params() == counting.count_parameters(tiny_image_config)


@pytest.mark.parametrize("name", ["gmlp_ti16_224", "gmlp_s16_224", "gmlp_b16_224"])
def test_vision_presets_have_exactly_timms_parameters(name):
    config = presets.get_preset_config(name)
    assert counting.count_parameters(config) == summary.TIMM_PARAMETERS[name]


# One real build per family: vision, gMLP (split SGU), Table 3 non-split, aMLP.
@pytest.mark.parametrize("name", ["gmlp_ti16_224", "gmlp_18l", "gmlp_36l_linear", "amlp_base"])
def test_real_preset_builds_match_the_closed_form(name):
    model = presets.build_preset(name)
    assert model.count_params() == counting.count_parameters(presets.get_preset_config(name))


@pytest.mark.parametrize("name", sorted(summary.PAPER_FIGURES))
def test_parameters_within_two_percent_of_the_paper(name):
    row = summary.summarize(name)
    assert abs(row.parameters_diff) < 0.02, row


@pytest.mark.parametrize("name", [n for n, (_, _, flops) in summary.PAPER_FIGURES.items() if flops])
def test_flops_within_five_percent_of_tables_1_and_5(name):
    row = summary.summarize(name)
    assert abs(row.flops_diff) < 0.05, row


def test_flops_hand_count():
    # L=1, d=2, e=4 (gate 2), n=3, vocab 5, 1 prediction: per token 2*4 + 3*2 + 2*2 = 18 MACs,
    # 3 tokens -> 54; head 1 * (2*2 + 2*5) = 14; total 68 MACs = 136 FLOPs.
    config = GMLPConfig(vocab_size=5, d_model=2, d_ffn=4, num_layers=1, max_seq_length=3)
    assert counting.count_flops(config, num_predictions=1) == 136
    # Tiny attention a=1 adds per token 3*2*1 + 2*3*1 + 1*2 = 14 MACs: 42 more, 84 FLOPs.
    assert counting.count_flops(config.replace(attention_size=1), num_predictions=1) == 136 + 84


def test_flops_hand_count_for_baselines():
    # L=1, d=2, e=4, n=3, vocab 5, 1 prediction (head: 14 MACs), one head.
    base = dict(vocab_size=5, d_model=2, d_ffn=4, num_layers=1, max_seq_length=3, architecture="transformer")
    # Per token: FFN 2*2*4 = 16; q, k, v, output 4*2*2 = 16; q k^T and (softmax) v 2*3*2 = 12:
    # 44 MACs, 3 tokens -> 132, with the head 146 MACs = 292 FLOPs.
    assert counting.count_flops(GMLPConfig(**base), num_predictions=1) == 292
    # Without content: no q, k (8 MACs) and no q k^T (6 MACs) per token: 30 * 3 + 14 = 104 MACs.
    no_content = GMLPConfig(**base, position_encoding="relative", attention_content=False)
    assert counting.count_flops(no_content, num_predictions=1) == 208
    # Mixer, d_spatial 2: token MLP 2 channels * (3*2 + 2*3) = 24; channel MLP 3 * 2*2*4 = 48;
    # 72 + 14 = 86 MACs.
    mixer = GMLPConfig(**dict(base, architecture="mlp_mixer"), d_spatial=2)
    assert counting.count_flops(mixer, num_predictions=1) == 172


def test_paper_order_puts_table_1_first():
    assert summary.paper_order(["gmlp_xlarge", "zzz_custom", "gmlp_ti16_224"]) == [
        "gmlp_ti16_224", "gmlp_xlarge", "zzz_custom"
    ]
