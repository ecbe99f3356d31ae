"""The job runtime: flags derived from the job specs, the shared flags, results files, error exit."""

import dataclasses
import json
import os
import subprocess
import sys
import typing

import pytest
import tensorflow as tf
from absl import flags as absl_flags

from gmlp_tf.benchmarks.pretraining import BenchmarkSpec
from gmlp_tf.export import ExportSpec
from gmlp_tf.runtime import checks, flags, run_directory, runner
from gmlp_tf.tasks.glue.task import JobSpec as GlueSpec
from gmlp_tf.tasks.imagenet import task as imagenet_job
from gmlp_tf.tasks.imagenet.task import JobSpec as ImagenetSpec
from gmlp_tf.tasks.pretraining.task import JobSpec as PretrainingSpec
from gmlp_tf.tasks.squad.task import JobSpec as SquadSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB_SPECS = [PretrainingSpec, GlueSpec, SquadSpec, ImagenetSpec]


@pytest.mark.parametrize("spec_cls", JOB_SPECS + [BenchmarkSpec, ExportSpec])
def test_every_spec_field_is_a_flag_with_the_same_default(spec_cls):
    values = absl_flags.FlagValues()
    flags.define_flags(spec_cls, flag_values=values, module_name="some_script")
    values(["some_script"])
    fields = {f.name: f for f in dataclasses.fields(spec_cls)}
    assert set(values) == set(fields)
    assert {f.name for f in values.get_key_flags_for_module("some_script")} == set(fields)
    # Parsed with no arguments, the flags give the spec's own defaults.
    assert flags.spec_from_flags(spec_cls, values) == spec_cls()


@pytest.mark.parametrize("spec_cls", JOB_SPECS)
def test_jobs_read_every_shared_flag_defined_by_the_runtime(spec_cls):
    values = absl_flags.FlagValues()
    flags.define_flags(spec_cls, flag_values=values, module_name="some_script")
    shared = set(flags.SHARED)
    assert shared <= {f.name for f in dataclasses.fields(spec_cls)}
    assert {f.name for f in values.get_flags_for_module(flags.__name__)} == shared


def test_flags_parse_into_typed_spec_values():
    values = absl_flags.FlagValues()
    flags.define_flags(PretrainingSpec, flag_values=values, module_name="some_script")
    values(["x", "--num_train_steps=20", "--learning_rate=1e-3", "--precision=mixed_bfloat16", "--nodo_eval",
            "--setup=full"])
    spec = flags.spec_from_flags(PretrainingSpec, values)
    assert (spec.num_train_steps, spec.learning_rate, spec.precision, spec.do_eval, spec.setup) == (
        20, 1e-3, "mixed_bfloat16", False, "full")
    with pytest.raises(absl_flags.IllegalFlagValueError):
        values(["x", "--precision=float64"])


def test_a_field_without_help_or_with_a_shared_name_of_another_type_is_refused():
    @dataclasses.dataclass
    class NoHelp:
        steps: int = 3

    @dataclasses.dataclass
    class WrongType:
        random_seed: typing.Optional[str] = flags.option(None, "a seed")

    for spec_cls in (NoHelp, WrongType):
        with pytest.raises(TypeError):
            flags.define_flags(spec_cls, flag_values=absl_flags.FlagValues(), module_name="s")


def test_results_are_written_as_text_and_json(tmp_path):
    results = {"perplexity": 12.5, "global_step": 30, "best_learning_rate": 2e-5}
    path = run_directory.write_results(str(tmp_path), results)
    assert open(path).read().splitlines() == ["best_learning_rate = 2e-05", "global_step = 30", "perplexity = 12.5"]
    assert json.load(open(tmp_path / "eval_results.json")) == results
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_shared_checks_name_the_flag():
    with pytest.raises(ValueError, match="--output_dir is required"):
        checks.require_output_dir(None)
    with pytest.raises(ValueError, match="--steps must be positive, got 0"):
        checks.check_positive(steps=0, other=None)
    checks.check_checkpoint_interval(25, 10)  # Checkpoints at 10, 20 and the last step.
    with pytest.raises(ValueError,
                       match=r"--save_checkpoints_steps \(10\) must be a multiple of --steps_per_execution \(4\)"):
        checks.check_checkpoint_interval(24, 10, 4)


def test_epochs_are_whole_executions():
    # GLUE and ImageNet checkpoint once an epoch; fit() cannot stop inside an execution.
    assert [checks.whole_executions(steps, 4) for steps in (1, 4, 10, 12)] == [4, 4, 12, 12]
    spec = ImagenetSpec(train_batch_size=4, num_train_epochs=2.0, steps_per_execution=2)
    setup = imagenet_job.resolve_recipe(spec)
    assert imagenet_job.epoch_schedule(spec, setup, 12)[:3] == (2, 4, 8)  # 3 steps an epoch become 4.


def test_numeric_checks_name_the_flag_and_refuse_nan():
    with pytest.raises(ValueError, match="--learning_rate must be positive, got nan"):
        checks.check_positive(learning_rate=float("nan"))
    checks.check_non_negative(num_warmup_steps=0, other=None)
    with pytest.raises(ValueError, match="--num_warmup_steps must be non-negative, got -3"):
        checks.check_non_negative(num_warmup_steps=-3)
    with pytest.raises(ValueError, match="--weight_decay must be non-negative, got nan"):
        checks.check_non_negative(weight_decay=float("nan"))


def test_run_script_turns_bad_input_into_one_line(capsys):
    def bad():
        raise FileNotFoundError("no such file: x.txt")

    with pytest.raises(SystemExit) as exit_info:
        runner.run_script("some_script.py", bad)
    assert exit_info.value.code == "some_script.py: error: no such file: x.txt"


def test_helpshort_of_a_script_lists_the_shared_flags():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_squad.py"), "--helpshort"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert "Traceback" not in result.stderr  # absl exits 1 after printing the help.
    for name in list(flags.SHARED) + ["train_file", "doc_stride"]:
        assert f"--{name}" in result.stdout or f"--[no]{name}" in result.stdout, name  # absl spells bools so.


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "--steps must be positive, got 0"),
    ({"steps": -5}, "--steps must be positive, got -5"),
    ({"batch_size": 0}, "--batch_size must be positive, got 0"),
    ({"max_seq_length": -1}, "--max_seq_length must be positive, got -1"),
    ({"max_predictions_per_seq": 0}, "--max_predictions_per_seq must be positive, got 0"),
    ({"steps_per_execution": 0}, "--steps_per_execution must be positive, got 0"),
    ({"bert_num_heads": 0}, "--bert_num_heads must be positive, got 0"),
    ({"bert_intermediate_dim": -1}, "--bert_intermediate_dim must be positive, got -1"),
    ({"num_layers": -2}, "--num_layers must be non-negative, got -2"),
    ({"max_seq_length": 4096}, "max_seq_length 4096 exceeds the model config's max_seq_length 128"),
])
def test_benchmark_refuses_bad_numbers_before_timing(changes, message):
    from gmlp_tf.benchmarks import pretraining as benchmark

    with pytest.raises(ValueError, match=message):
        benchmark.run(BenchmarkSpec(**changes))


def test_benchmark_script_steps_0_is_one_error_line():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark_pretraining.py"), "--steps=0"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "benchmark_pretraining.py: error: --steps must be positive, got 0"
    assert not result.stdout  # Nothing timed, nothing printed.


def test_infinite_numbers_are_refused_naming_the_flag():
    with pytest.raises(ValueError, match="^--learning_rate must be a finite number, got inf$"):
        checks.check_positive(learning_rate=float("inf"))
    with pytest.raises(ValueError, match="^--weight_decay must be a finite number, got inf$"):
        checks.check_non_negative(weight_decay=float("inf"))


def test_run_script_reports_interrupts_and_unreadable_data_in_one_line(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        runner.run_script("some_script.py", interrupted)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("some_script.py: interrupted;") and "rerun the same command to resume" in err
    assert "\n" not in err

    def truncated():
        raise tf.errors.DataLossError(None, None, "truncated record at 1024\n\t [[{{node IteratorGetNext}}]]")

    with pytest.raises(SystemExit) as exit_info:
        runner.run_script("some_script.py", truncated)
    assert exit_info.value.code == ("some_script.py: error: the input data could not be read: "
                                    "truncated record at 1024")


def test_stray_arguments_are_one_line_without_the_flag_help():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_squad.py"), "stray", "words"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("run_squad.py: error: unexpected arguments: stray words")
    assert "--helpshort" in result.stderr and "--doc_stride" not in result.stderr  # No flag help printed.
