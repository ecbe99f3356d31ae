"""The layout rules, checked from the code: imports run one way down the levels, tasks stay apart,
modules and functions stay small, and the model side needs no keras-cv."""

import ast
import os
import pathlib
import re
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
            "import gmlp_tf.tasks.pretraining.task, gmlp_tf.tasks.glue.task, gmlp_tf.tasks.squad.task, gmlp_tf.export; "
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


def _module_level_imports(path: pathlib.Path):
    """Top names imported when the module itself is imported (function bodies excluded)."""
    names = []

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def test_the_model_side_imports_tensorflow_only_where_a_path_needs_it():
    # It runs on JAX and PyTorch where TensorFlow is absent (test_backends.py runs it so).
    model_side = [PACKAGE / "__init__.py", PACKAGE / "config.py", PACKAGE / "presets.py", PACKAGE / "counting.py",
                  *(PACKAGE / "layers").glob("*.py"), *(PACKAGE / "models").glob("*.py"),
                  *(PACKAGE / "utils").glob("*.py")]
    for path in model_side:
        assert "tensorflow" not in _module_level_imports(path), f"{path.relative_to(ROOT)} imports tensorflow"


# Lowest first: a module imports its own level and those below it, never one above (docs/architecture.md).
LEVELS = [
    ("utils",),
    ("config",),
    ("layers", "counting"),
    ("models", "presets", "summary", "tokenization"),
    ("runtime", "finetuning"),
    ("tasks",),
    ("analysis", "benchmarks", "export", "studies"),
]


def _level(module: str):
    parts = module.split(".")
    if parts[0] != "gmlp_tf" or len(parts) < 2:
        return None
    return next((i for i, names in enumerate(LEVELS) if parts[1] in names), None)


def test_imports_run_one_way_down_the_levels():
    modules = sorted(PACKAGE.rglob("*.py"))
    tops = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in modules} - {"__init__"}
    assert tops <= {name for names in LEVELS for name in names}, tops  # every part of the package has a level
    for path in modules:
        mine = _level(".".join(("gmlp_tf",) + path.relative_to(PACKAGE).with_suffix("").parts))
        if mine is None:
            continue
        text = path.read_text(encoding="utf-8")
        named = _gmlp_imports(path) + re.findall(r"[\"'](gmlp_tf(?:\.\w+)+)[\"']", text)  # import_module names
        for name in named:
            theirs = _level(name)
            assert theirs is None or theirs <= mine, f"{path.relative_to(ROOT)} imports {name}, a level above it"


def test_modules_and_functions_stay_small():
    for path in list(PACKAGE.rglob("*.py")) + list((ROOT / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.is_relative_to(PACKAGE):
            assert len(path.read_text(encoding="utf-8").splitlines()) <= 600, (
                f"{path.relative_to(ROOT)}: over 600 lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
                length = node.end_lineno - body[0].lineno + 1
                assert length <= 60, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} body lines"
