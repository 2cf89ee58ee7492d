"""The layout's rules: dependencies point one way, no import cycle, no environment switches,
and each test lives where its dependencies say (`tests/`: JAX only; `parity_tests/`: PyTorch).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("se_spec", "se_flax", "se_torch_ref", "parity_tests", "train", "bench")
# What each package may import of the others.
ALLOWED = {
    "se_spec": set(),
    "se_flax": {"se_spec"},
    "se_torch_ref": {"se_spec"},
    "parity_tests": {"se_spec", "se_flax", "se_torch_ref", "train"},
    "train": {"se_spec", "se_flax", "se_torch_ref"},
    "bench": {"se_spec", "se_flax", "se_torch_ref", "train"},
}
TORCH_SIDE = {"torch", "se_torch_ref", "parity_tests"}


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports, at any depth of the file (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "test_" not in p.name)


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package):
    wrong = {f"{p.relative_to(ROOT)} imports {name}" for p in _sources(package)
             for name in _imports(p)
             if name.split(".")[0] in set(PACKAGES) - {package} - ALLOWED[package]}
    assert not wrong, sorted(wrong)


def test_no_import_cycle_inside_the_conversion_package():
    modules = {p.stem: p for p in (ROOT / "se_flax" / "convert").glob("*.py")
               if p.stem not in ("__init__", "__main__")}
    graph = {m: {n.split(".")[2] for n in _imports(p)
                 if n.startswith("se_flax.convert.") and n.split(".")[2] in modules}
             for m, p in modules.items()}
    done, active = set(), []

    def visit(m):
        assert m not in active, f"import cycle: {' → '.join(active[active.index(m):] + [m])}"
        if m in done:
            return
        active.append(m)
        for dep in graph[m]:
            visit(dep)
        active.pop()
        done.add(m)

    for m in graph:
        visit(m)
    assert len(done) >= 8


@pytest.mark.parametrize("package", ["se_spec", "se_flax", "se_torch_ref"])
def test_library_code_reads_no_environment_variable(package):
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _sources(package)
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if "os.environ" in line or "getenv" in line]
    assert not hits, hits


@pytest.mark.parametrize("package,forbidden", [
    ("se_torch_ref", {"jax", "flax", "se_flax"}),
    ("se_flax", {"torch", "se_torch_ref"}),
    ("se_spec", {"jax", "flax", "torch", "se_flax", "se_torch_ref"}),
])
def test_importing_a_package_loads_neither_the_other_framework_nor_its_package(package,
                                                                               forbidden):
    code = (f"import sys, {package}; [getattr({package}, n) for n in {package}.__all__]; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(forbidden)!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    assert out.strip() == "[]", out


def test_tests_live_where_their_dependencies_say():
    jax_only = sorted((ROOT / "tests").rglob("test_*.py"))
    needs_torch = sorted((ROOT / "parity_tests").rglob("test_*.py"))
    assert len(jax_only) > 10 and len(needs_torch) > 5

    def torch_side(p: Path) -> list[str]:
        return sorted(TORCH_SIDE & {n.split(".")[0] for n in _imports(p)})

    wrong = [f"{p.relative_to(ROOT)} imports {torch_side(p)}" for p in jax_only if torch_side(p)]
    wrong += [f"{p.relative_to(ROOT)} needs no PyTorch: move it to tests/" for p in needs_torch
              if not torch_side(p)]
    assert not wrong, wrong


def test_every_test_the_readme_names_exists():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:tests|parity_tests)/[\w/]+\.py)(?:::(\w+))?", readme))
    named |= {(path, name) for path, names in re.findall(
        r"`((?:tests|parity_tests)/[\w/]+\.py)::\w+`((?:, `::\w+`)+)", readme)
        for name in re.findall(r"::(\w+)", names)}
    assert len(named) > 10
    missing = []
    for path, name in sorted(named):
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name and f"def {name}" not in source.read_text():
            missing.append(f"{path}::{name}")
    assert not missing, missing
