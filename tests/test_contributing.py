"""CONTRIBUTING.md stays true: the names and files it cites exist, the layer map is the one the
imports follow, and only the Trainer steps an optimizer."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cnnlab

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(cnnlab.__file__).parent
GUIDE = (ROOT / "CONTRIBUTING.md").read_text()


def _resolve(dotted: str):
    """The object a dotted name such as ``cnnlab.train.config.RunConfig.validate`` names."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_cited_name_exists():
    names = set(re.findall(r"`(cnnlab(?:\.\w+)+)`", GUIDE))
    assert len(names) > 30, "the guide cites the library by dotted names"
    for name in sorted(names):
        assert _resolve(name) is not None, name


def test_every_cited_file_exists():
    paths = {p for p in re.findall(r"`((?:src|tests)/[\w/.]+)`", GUIDE)}
    assert paths
    for path in sorted(paths):
        assert (ROOT / path).exists(), path


def test_make_test_runs_ruff_first():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\blint\b", make, re.M), "make test depends on make lint"
    assert re.search(r"^lint:.*\n\t.*ruff check src tests benchmarks", make, re.M)


def _layer_map() -> dict[str, set[str] | str]:
    block = GUIDE.split("```text", 1)[1].split("```", 1)[0]
    rules = {}
    for line in block.strip().splitlines():
        name, allowed = (part.strip() for part in line.split(":", 1))
        rules[name] = allowed if allowed.startswith("any") or allowed == "nothing" else set(
            allowed.split())
    return rules


def _imports() -> dict[str, set[str]]:
    """package -> the cnnlab packages its modules import (at the top or inside functions)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel == Path("__init__.py"):
            continue  # the public API re-exports from the layers
        package = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                       [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for module in modules:
                parts = module.split(".")
                if parts[0] == "cnnlab":
                    target = parts[1] if len(parts) > 1 else "cnnlab"
                    if target != package:
                        found.setdefault(package, set()).add(target)
    return found


def test_imports_follow_the_layer_map():
    rules = _layer_map()
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages == set(rules), "every package of src/cnnlab has one line in the map"
    for package, targets in _imports().items():
        allowed = rules[package]
        if allowed == "any":
            continue
        if allowed == "nothing":
            allowed = set()
        elif isinstance(allowed, str):  # "any but x y"
            allowed = (packages | {"cnnlab"}) - set(allowed.split()[2:]) - {package}
        assert targets <= allowed, f"{package} imports {sorted(targets - allowed)}"


def test_only_the_trainer_steps_an_optimizer():
    """Every training loop is the Trainer's; the one exception is the textbook loop the training
    benchmarks measure cnnlab against (``textbook_loop`` in benchmarks/_harness.py)."""
    step = re.compile(r"\b\w*opt\w*\.(step|zero_grad)\(")
    offenders = []
    for path in [*SRC.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        if path.is_relative_to(SRC / "train"):
            continue
        text = path.read_text()
        if path.name == "_harness.py":  # the textbook loop
            baseline = next(fn for fn in ast.walk(ast.parse(text))
                            if isinstance(fn, ast.FunctionDef) and fn.name == "textbook_loop")
            text = text.replace(ast.get_source_segment(text, baseline), "")
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in step.finditer(text)]
    assert offenders == []


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_takes_a_torch_index_and_keeps_the_default():
    """`make -n` prints the set-up's commands without running them."""
    def setup(*extra):
        return subprocess.run(["make", "-n", "-B", "setup", *extra], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.splitlines()

    index = "https://download.pytorch.org/whl/cpu"
    plain, cpu = setup(), setup(f"TORCH_INDEX={index}")
    assert not any("--index-url" in line for line in plain)
    first = next(i for i, line in enumerate(cpu) if "pip install" in line)
    assert cpu[first].endswith(f"pip install --quiet --index-url {index} torch torchvision")
    assert "pip install --quiet -e '.[dev]'" in cpu[first + 1]  # then the rest, torch already there
    assert [line for line in cpu if "--index-url" not in line] == plain
