"""Every import points down (docs/design.md, "Layers"): application -> jobs and trainer -> library.

Imports inside functions count too: a lazy import is still a dependency.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).parent.parent
PACKAGES = ("noisystudent", "beam_pipelines", "trainer", "model", "deploy")

# layer -> the layers its modules may import (its own included)
ALLOWED = {
    "library": {"library"},                                       # noisystudent/*.py
    "model": {"model"},
    "beam_pipelines": {"beam_pipelines", "library"},
    "trainer": {"trainer", "model", "library"},
    "deploy": {"deploy", "beam_pipelines"},                        # the Beam job list only
    "app": {"app", "beam_pipelines", "trainer", "model", "deploy", "library"},
}


def _layer_of_module(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "noisystudent":
        return "app" if len(parts) > 1 and parts[1] == "app" else "library"
    return parts[0]


def _layer_of_file(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return _layer_of_module(".".join(rel.parts))


def _project_imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield node.lineno, name


def test_every_import_points_down_the_layers():
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert len(files) > 40
    wrong = []
    for path in files:
        layer = _layer_of_file(path)
        for line, name in _project_imports(path):
            target = _layer_of_module(name)
            if target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {name} ({target})")
    assert not wrong, "\n".join(wrong)


def test_the_teacher_is_loaded_in_one_place():
    """predict (Beam), classify, features, the trainer's online mode, init checkpoints and export load trained
    models through noisystudent/teacher.py: no `load_model(` call (keras.saving's, tf.keras', Beam's model
    handlers') anywhere else, and every loader there checks the file first."""
    calls = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name == "load_model":
                        calls.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    teacher = ROOT / "noisystudent" / "teacher.py"
    assert calls and all(c.startswith("noisystudent/teacher.py:") for c in calls), calls
    loaders = {node.name: ast.unparse(node) for node in ast.walk(ast.parse(teacher.read_text()))
               if isinstance(node, ast.FunctionDef) and "load_model(" in ast.unparse(node)}
    assert set(loaders) == {"load_teacher", "load_keras_model"}, sorted(loaders)
    assert all("check_model_file(" in source for source in loaders.values())


def test_beam_jobs_stay_small_functions_on_one_runner():
    """Each job is a plan for beam_pipelines/job_runner.py (no copy of the run skeleton), and no
    function in beam_pipelines/ outgrows a screen."""
    long = []
    for path in (ROOT / "beam_pipelines").glob("*.py"):
        tree = ast.parse(path.read_text())
        long += [f"{path.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
                 if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60]
        if path.name not in ("job_runner.py", "pipeline_options.py"):
            assert "run_pipeline(" not in path.read_text(), f"{path.name} runs its own skeleton"
    assert not long, long
