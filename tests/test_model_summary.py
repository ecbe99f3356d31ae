"""scripts/model_summary.py end to end."""

import json
import os
import subprocess
import sys

from gmlp_tf import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "model_summary.py")


def run(*flags):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True, env=env, timeout=300)


def test_json_lists_every_preset_with_paper_figures():
    result = run("--format=json")
    assert result.returncode == 0, result.stderr
    rows = {row["preset"]: row for row in json.loads(result.stdout)}
    assert set(summary.PAPER_FIGURES) <= set(rows)
    assert rows["gmlp_demo"]["paper_parameters_m"] is None  # Ours, not the paper's.
    base = rows["gmlp_base"]
    assert base["paper_parameters_m"] == 130 and abs(base["parameters_diff"]) < 0.02
    assert base["paper_flops_b"] == 158.0 and abs(base["flops_diff"]) < 0.05
    assert rows["gmlp_s16_224"]["parameters"] == 19_422_656


def test_text_table_for_one_preset_with_a_real_build():
    result = run("--preset=gmlp_ti16_224", "--build")
    assert result.returncode == 0, result.stderr
    line = [line_ for line_ in result.stdout.splitlines() if line_.startswith("gmlp_ti16_224")][0]
    assert "5.867" in line and "5,867,328" in line


def test_unknown_preset_is_one_clear_error():
    result = run("--preset=gmlp_huge")
    assert result.returncode != 0
    assert "error: unknown preset 'gmlp_huge'" in result.stderr
    assert "Traceback" not in result.stderr
