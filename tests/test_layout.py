"""The layout rules, checked from the code: the model side needs no keras-cv, tasks stay apart."""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gmlp_tf"


def _gmlp_imports(path: pathlib.Path):
    """Absolute names of the gmlp_tf modules a file imports (at any depth in the file)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in names if name.startswith("gmlp_tf")]


def test_text_models_and_text_tasks_do_not_import_keras_cv():
    code = ("import sys, gmlp_tf; gmlp_tf.build_preset('gmlp_demo'); "
            "import gmlp_tf.tasks.pretraining.job, gmlp_tf.tasks.glue.job, gmlp_tf.tasks.squad.job, gmlp_tf.export; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'keras_cv'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_no_task_imports_another_task():
    tasks = [d for d in (PACKAGE / "tasks").iterdir() if d.is_dir() and (d / "__init__.py").exists()]
    assert {d.name for d in tasks} == {"pretraining", "glue", "squad", "imagenet"}
    for task in tasks:
        for path in task.rglob("*.py"):
            for name in _gmlp_imports(path):
                parts = name.split(".")
                if parts[1:2] == ["tasks"] and len(parts) > 2:
                    assert parts[2] == task.name, f"{path.relative_to(ROOT)} imports {name}"


def test_config_and_the_model_side_import_no_runtime_task_or_export():
    assert _gmlp_imports(PACKAGE / "config.py") == []
    model_side = [PACKAGE / "presets.py", PACKAGE / "counting.py", *(PACKAGE / "layers").glob("*.py"),
                  *(PACKAGE / "models").glob("*.py")]
    for path in model_side:
        for name in _gmlp_imports(path):
            assert name.split(".")[1:2] not in (["runtime"], ["tasks"], ["export"]), f"{path.relative_to(ROOT)}: {name}"
