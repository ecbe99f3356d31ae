"""run_ablation.py: the Table 3 variants, their size matching, and a tiny study end to end."""

import json

import numpy as np
import pytest

from gmlp_tf import counting
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.presets import get_preset_config
from gmlp_tf.studies import ablation

VOCAB = 120


@pytest.mark.parametrize("preset", ["gmlp_demo", "gmlp_36l"])
def test_variants_are_matched_as_in_the_paper(preset):
    base = get_preset_config(preset)
    configs = ablation.variant_configs(base, ablation.VARIANT_NAMES)
    assert list(configs) == list(ablation.VARIANT_NAMES)
    split = configs["gmlp_split"]
    target = counting.count_parameters(split)
    for name, config in configs.items():
        assert config.d_model == base.d_model and config.max_seq_length == base.max_seq_length, name
        if name.startswith("gmlp") or name == "amlp":
            assert config.architecture == "gmlp" and config.num_layers == base.num_layers, name
        else:  # Baselines: within 10% of the gMLP's parameters, as the paper's 96M-112M against 102M.
            assert abs(counting.count_parameters(config) - target) <= 0.1 * target, name
    for name in ("gmlp_linear", "gmlp_additive", "gmlp_multiplicative"):
        assert configs[name].d_ffn == round(base.d_ffn * 2 / 3)  # The paper's 92M against 102M.
        assert counting.count_parameters(configs[name]) < target
    assert configs["gmlp_split_dense"].spatial_kind == "dense" and split.spatial_kind == "toeplitz"
    assert configs["amlp"].attention_size == ablation.AMLP_ATTENTION_SIZE
    assert configs["transformer"].position_encoding == "absolute"
    assert configs["transformer_relpos"].position_encoding == "relative"
    assert not configs["transformer_relpos_noattn"].attention_content
    assert configs["mlp_mixer"].d_spatial == 3 * base.max_seq_length


def test_bad_variant_lists_and_flags_are_refused():
    with pytest.raises(ValueError, match="unknown variant.*gmlp_spilt"):
        ablation.parse_variants("gmlp_split,gmlp_spilt")
    with pytest.raises(ValueError, match="twice"):
        ablation.parse_variants("amlp,amlp")
    with pytest.raises(ValueError, match="names no variant"):
        ablation.parse_variants(" , ")
    with pytest.raises(ValueError, match="--repeats must be positive"):
        ablation.resolve(ablation.AblationSpec(repeats=0, output_dir="x"))
    with pytest.raises(ValueError, match="--do_eval"):
        ablation.resolve(ablation.AblationSpec(do_eval=False, output_dir="x"))
    with pytest.raises(ValueError, match="text gMLP"):
        ablation.base_gmlp_config(get_preset_config("gmlp_ti16_224"))


def test_checkpoint_interval_divides_the_steps():
    assert ablation.checkpoint_interval(500) == 100
    assert ablation.checkpoint_interval(20) == 4
    assert ablation.checkpoint_interval(7) == 1
    assert ablation.checkpoint_interval(3) == 1


def test_tiny_study_end_to_end_then_a_rerun_trains_nothing(study_corpus, tmp_path, monkeypatch):
    # A project Transformer and keras-hub's BERT (the scaling study's test trains gMLPs end to end).
    spec = ablation.AblationSpec(
        variants="transformer_relpos_noattn,bert_keras_hub", repeats=1,
        input_file=str(study_corpus / "train.txt"), eval_input_file=str(study_corpus / "eval.txt"),
        vocab_file=str(study_corpus / "spm.model"), gmlp_config_file=str(study_corpus / "base.json"),
        output_dir=str(tmp_path), max_seq_length=16, max_predictions_per_seq=3, train_batch_size=8,
        eval_batch_size=8, learning_rate=5e-3, num_train_steps=2, log_every_steps=1, max_eval_steps=2,
        shuffle_buffer=64, example_format="packed",  # Builds faster than the default segment pairs.
        jit_compile=False,  # Compiling costs seconds a run; the pretraining tests check XLA.
    )
    summary = ablation.run(spec)
    rows = {row["variant"]: row for row in summary["variants"]}
    assert list(rows) == ["transformer_relpos_noattn", "bert_keras_hub"]
    for name, row in rows.items():
        run_dir = tmp_path / name
        assert saved_runs.latest_weights(str(run_dir)), name
        config = GMLPConfig.from_json_file(str(run_dir / "gmlp_config.json"))
        assert row["parameters"] == counting.count_parameters(config)
        results = json.loads((run_dir / "eval_results.json").read_text())
        assert row["perplexity"] == pytest.approx(results["perplexity"]) and row["steps"] == 2
        # A held-out point at every checkpoint (every step here: 2 steps // 5 points -> 1).
        assert [step for step, _ in row["runs"][0]["curve"]] == [1, 2]
    on_disk = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["variant"] for r in on_disk["variants"]] == list(rows)
    # The first run computed the unigram baseline, the second did not need to.
    assert on_disk["unigram_perplexity"] > 1
    def final(name):
        return json.loads((tmp_path / name / "eval_results.json").read_text())

    assert "unigram_perplexity" in final("transformer_relpos_noattn")
    assert "unigram_perplexity" not in final("bert_keras_hub")
    info = json.loads((tmp_path / "bert_keras_hub" / "run_info.json").read_text())
    assert info["task"] == "pretraining_keras_hub_bert"  # Not taken for a gMLP encoder's run.
    # The project's Transformer has its attention probed at every checkpoint; keras-hub's BERT does not.
    attention = on_disk["variants"][0]["runs"][0]["attention"]
    layers = rows["transformer_relpos_noattn"]["num_layers"]
    assert sorted(attention) == sorted(["uniform_weight"] + [f"{kind}_{i}" for i in range(layers) for kind in (
        "max_weight", "mean_peak_weight", "mean_self_weight", "max_relative_bias")])
    assert all([step for step, _ in curve] == [1, 2] for curve in attention.values())
    assert all(0 < value <= 1 for _, value in attention["max_weight_0"])
    assert on_disk["variants"][1]["runs"][0]["attention"] == {}
    table = (tmp_path / "ablation.md").read_text()
    assert f"| bert_keras_hub | {rows['bert_keras_hub']['num_layers']} | 32 | 128 |" in table
    assert "4.37" in table and "5.64" in table  # The paper's figures beside ours.
    assert "| transformer_relpos_noattn | 2 | 0 |" in table  # The attention table, at step 2, layer 0.
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def no_training(job_spec, *args):
        raise AssertionError(f"{job_spec.output_dir} was trained again")

    monkeypatch.setattr(ablation, "_train", no_training)
    again = ablation.run(spec)
    assert [r["perplexity"] for r in again["variants"]] == [r["perplexity"] for r in summary["variants"]]


def test_repeats_give_mean_and_spread(tmp_path, monkeypatch):
    # The runs themselves are the job's (tested above); here only how repeats are laid out and summed.
    seen = []

    def fake_run(job_spec, variant, config, with_unigram):
        seen.append((job_spec.output_dir, job_spec.random_seed, with_unigram))
        return {"perplexity": 100.0 + job_spec.random_seed % 7, "masked_lm_accuracy": 0.5, "global_step": 3}

    monkeypatch.setattr(ablation, "_train", fake_run)
    base = tmp_path / "base.json"
    GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=96, num_layers=2, max_seq_length=16).to_json_file(str(base))
    spec = ablation.AblationSpec(variants="gmlp_split", repeats=3, input_file="train.txt", eval_input_file="eval.txt",
                                 gmlp_config_file=str(base), output_dir=str(tmp_path / "out"), num_train_steps=3)
    row = ablation.run(spec)["variants"][0]
    seeds = [spec.random_seed + i for i in range(3)]
    # Only the first run computes the unigram baseline: the same data gives the same figure.
    assert seen == [(str(tmp_path / "out" / "gmlp_split" / f"run_{i}"), seed, i == 0) for i, seed in enumerate(seeds)]
    values = [100.0 + seed % 7 for seed in seeds]
    assert [r["seed"] for r in row["runs"]] == seeds and [r["perplexity"] for r in row["runs"]] == values
    assert row["perplexity"] == pytest.approx(sum(values) / 3)
    mean = sum(values) / 3
    assert row["perplexity_std"] == pytest.approx((sum((v - mean) ** 2 for v in values) / 2) ** 0.5)
    assert "±" in (tmp_path / "out" / "ablation.md").read_text()


def test_paper_sizing_widens_the_baselines_and_matches_their_depth():
    assert ablation.baseline_width(512, "paper") == 768 and ablation.baseline_width(128, "paper") == 192
    assert ablation.baseline_width(512, "equal_width") == 512 and ablation.baseline_width(32, "paper") == 48
    with pytest.raises(ValueError, match="--sizing must be one of"):
        ablation.baseline_width(512, "wide")
    base = get_preset_config("gmlp_36l")
    configs = ablation.variant_configs(base, ablation.VARIANT_NAMES, sizing="paper")
    target = counting.count_parameters(configs["gmlp_split"])
    for name in ("transformer", "transformer_relpos", "mlp_mixer", "bert_keras_hub"):
        config = configs[name]
        assert config.d_model == 768 and config.d_ffn == 4 * 768, name
        assert abs(counting.count_parameters(config) - target) <= 0.1 * target, name
        # The depth is the nearest to gMLP's parameters: one layer more or less is further from them.
        for other in (config.num_layers - 1, config.num_layers + 1):
            assert abs(counting.count_parameters(config.replace(num_layers=other)) - target) >= abs(
                counting.count_parameters(config) - target), name
    assert configs["transformer"].num_attention_heads == 12  # BERT-base's 64-wide heads.
    assert configs["gmlp_linear"].d_model == 512 and configs["amlp"].d_model == 512  # gMLPs keep their width.


def test_learning_rate_lists_are_checked():
    assert ablation.parse_learning_rates(None, None) == [None]
    assert ablation.parse_learning_rates(None, 3e-3) == [3e-3]
    assert ablation.parse_learning_rates("1e-3, 2e-3,4e-3", None) == [1e-3, 2e-3, 4e-3]
    for text, message in (("1e-3,x", "comma-separated numbers"), ("1e-3,1e-3", "twice"), ("0,1e-3", "positive"),
                          (" , ", "names no rate")):
        with pytest.raises(ValueError, match=message):
            ablation.parse_learning_rates(text, None)
    with pytest.raises(ValueError, match="not both"):
        ablation.parse_learning_rates("1e-3", 1e-3)


def test_without_keras_hub_the_default_skips_its_bert_and_naming_it_says_how_to_install(monkeypatch):
    from gmlp_tf.studies import keras_hub_bert

    def missing():
        raise ImportError(keras_hub_bert.INSTALL_HINT)

    monkeypatch.setattr(keras_hub_bert, "check_available", missing)
    assert ablation.parse_variants(None) == [v for v in ablation.VARIANT_NAMES if v != "bert_keras_hub"]
    with pytest.raises(ValueError, match=r"bert_keras_hub: keras-hub is not installed: pip install \"\.\[bench\]\""):
        ablation.parse_variants("gmlp_split,bert_keras_hub")
    monkeypatch.undo()
    assert ablation.parse_variants(None) == list(ablation.VARIANT_NAMES)


def test_keras_hub_bert_reads_the_pretraining_features_and_is_sized_as_the_transformer():
    from gmlp_tf.studies import keras_hub_bert

    base = GMLPConfig(vocab_size=VOCAB, d_model=64, d_ffn=384, num_layers=2, max_seq_length=16)
    configs = ablation.variant_configs(base, ["transformer", "bert_keras_hub"])
    assert configs["bert_keras_hub"] == configs["transformer"]
    model = keras_hub_bert.masked_lm_model(configs["bert_keras_hub"], max_predictions_per_seq=3)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, VOCAB, (2, 16)).astype("int32")
    mask = np.ones((2, 16), "int32")
    mask[1, 10:] = 0
    features = {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids),
                "masked_lm_positions": np.array([[1, 2, 3], [4, 5, 0]], "int32")}
    logits = model(features)
    assert tuple(logits.shape) == (2, 3, VOCAB)
    # Padding is masked out: what follows the padding mask does not change the logits of real tokens.
    changed = dict(features, input_ids=np.where(mask == 1, ids, 7).astype("int32"))
    np.testing.assert_allclose(np.asarray(model(changed))[1], np.asarray(logits)[1], atol=1e-5)
    ours = counting.count_parameters(configs["transformer"])
    theirs = keras_hub_bert.trained_parameters(configs["bert_keras_hub"])
    assert abs(theirs - ours) <= 0.05 * ours  # Post- against pre-LayerNorm, BERT's head: the same size class.


def test_learning_rate_sweep_trains_each_rate_and_keeps_the_best(tmp_path, monkeypatch):
    # The runs are the job's (tested end to end above); here the sweep's layout, choice and tables.
    seen = []

    def fake_run(job_spec, variant, config, with_unigram):
        seen.append((job_spec.output_dir, job_spec.learning_rate, with_unigram))
        perplexity = {5e-3: 90.0, 1e-2: 80.0}[job_spec.learning_rate] + (10.0 if variant.name == "gmlp_split" else 0)
        if variant.name == "gmlp_split" and job_spec.learning_rate == 5e-3:
            perplexity = 50.0  # gMLP's best rate is the other one.
        return {"perplexity": perplexity, "masked_lm_accuracy": 0.5, "global_step": 3}

    monkeypatch.setattr(ablation, "_train", fake_run)
    base = tmp_path / "base.json"
    GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=96, num_layers=2, max_seq_length=16).to_json_file(str(base))
    spec = ablation.AblationSpec(variants="gmlp_split,transformer", learning_rates="5e-3,1e-2",
                                 input_file="train.txt", eval_input_file="eval.txt", gmlp_config_file=str(base),
                                 output_dir=str(tmp_path), num_train_steps=3)
    summary = ablation.run(spec)
    assert seen == [(str(tmp_path / name / f"lr_{rate:g}"), rate, first) for name, rate, first in (
        ("gmlp_split", 5e-3, True), ("gmlp_split", 1e-2, False), ("transformer", 5e-3, False),
        ("transformer", 1e-2, False))]
    assert summary["setup"]["learning_rates"] == [5e-3, 1e-2]
    rows = {row["variant"]: row for row in summary["variants"]}
    assert (rows["gmlp_split"]["learning_rate"], rows["gmlp_split"]["perplexity"]) == (5e-3, 50.0)
    assert (rows["transformer"]["learning_rate"], rows["transformer"]["perplexity"]) == (1e-2, 80.0)
    for row in rows.values():
        assert [entry["learning_rate"] for entry in row["sweep"]] == [5e-3, 1e-2]
    on_disk = json.loads((tmp_path / "ablation.json").read_text())
    assert [entry["perplexity"] for entry in on_disk["variants"][1]["sweep"]] == [90.0, 80.0]
    table = (tmp_path / "ablation.md").read_text()
    assert "each variant at its best peak learning rate of 0.005, 0.01" in table
    header, row = (line.split(" | ") for line in (_line(table, "| variant | L |"), _line(table, "| gmlp_split | 2 |")))
    assert row[header.index("peak lr")] == "0.005" and row[header.index("held-out ppl")] == "50.00"
    assert "| gmlp_split | **50.00** | 90.00 |" in table and "| transformer | 90.00 | **80.00** |" in table
    # A rerun at another rate into the same directory is refused rather than mixed in.
    record = tmp_path / "transformer" / "lr_0.01" / ablation.RUN_RECORD
    record.write_text(record.read_text().replace('"learning_rate": 0.01', '"learning_rate": 0.02'))
    with pytest.raises(ValueError, match="peak learning rate 0.02, not 0.01"):
        ablation.run(spec)


def _line(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))
