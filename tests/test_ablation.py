"""run_ablation.py: the Table 3 variants, their size matching, and a tiny study end to end."""

import json

import pytest
from text_fixtures import fake_sentences

from gmlp_tf import counting, tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.presets import get_preset_config
from gmlp_tf.studies import ablation
from gmlp_tf.tasks.pretraining import task as pretraining_job

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablation")
    (folder / "train.txt").write_text("\n".join(fake_sentences(400, seed=1)) + "\n")
    (folder / "eval.txt").write_text("\n".join(fake_sentences(60, seed=2)) + "\n")
    tokenization.train_sentencepiece([str(folder / "train.txt")], str(folder / "spm"), vocab_size=VOCAB,
                                     character_coverage=1.0)
    GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=96, num_layers=2, max_seq_length=16).to_json_file(
        str(folder / "base.json"))
    return folder


def test_tiny_study_end_to_end_then_a_rerun_trains_nothing(corpus, tmp_path, monkeypatch):
    spec = ablation.AblationSpec(
        variants="transformer_relpos_noattn,gmlp_split", repeats=1,
        input_file=str(corpus / "train.txt"), eval_input_file=str(corpus / "eval.txt"),
        vocab_file=str(corpus / "spm.model"), gmlp_config_file=str(corpus / "base.json"),
        output_dir=str(tmp_path), max_seq_length=16, max_predictions_per_seq=3, train_batch_size=8,
        eval_batch_size=8, learning_rate=5e-3, num_train_steps=2, log_every_steps=1, max_eval_steps=2,
        shuffle_buffer=64, example_format="packed",  # Builds faster than the default segment pairs.
    )
    summary = ablation.run(spec)
    rows = {row["variant"]: row for row in summary["variants"]}
    assert list(rows) == ["transformer_relpos_noattn", "gmlp_split"]
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
    table = (tmp_path / "ablation.md").read_text()
    assert "| gmlp_split | 2 | 32 | 96 |" in table and "4.35" in table and "5.64" in table
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def no_training(job_spec):
        raise AssertionError(f"{job_spec.output_dir} was trained again")

    monkeypatch.setattr(pretraining_job, "run", no_training)
    again = ablation.run(spec)
    assert [r["perplexity"] for r in again["variants"]] == [r["perplexity"] for r in summary["variants"]]


def test_repeats_give_mean_and_spread(tmp_path, monkeypatch):
    # The runs themselves are the job's (tested above); here only how repeats are laid out and summed.
    seen = []

    def fake_run(job_spec):
        seen.append((job_spec.output_dir, job_spec.random_seed))
        return {"perplexity": 100.0 + job_spec.random_seed % 7, "masked_lm_accuracy": 0.5, "global_step": 3}

    monkeypatch.setattr(pretraining_job, "run", fake_run)
    base = tmp_path / "base.json"
    GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=96, num_layers=2, max_seq_length=16).to_json_file(str(base))
    spec = ablation.AblationSpec(variants="gmlp_split", repeats=3, input_file="train.txt", eval_input_file="eval.txt",
                                 gmlp_config_file=str(base), output_dir=str(tmp_path / "out"), num_train_steps=3)
    row = ablation.run(spec)["variants"][0]
    seeds = [spec.random_seed + i for i in range(3)]
    assert seen == [(str(tmp_path / "out" / "gmlp_split" / f"run_{i}"), seed) for i, seed in enumerate(seeds)]
    values = [100.0 + seed % 7 for seed in seeds]
    assert [r["seed"] for r in row["runs"]] == seeds and [r["perplexity"] for r in row["runs"]] == values
    assert row["perplexity"] == pytest.approx(sum(values) / 3)
    mean = sum(values) / 3
    assert row["perplexity_std"] == pytest.approx((sum((v - mean) ** 2 for v in values) / 2) ** 0.5)
    assert "±" in (tmp_path / "out" / "ablation.md").read_text()
