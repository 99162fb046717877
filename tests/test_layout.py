"""The layout's rules (README, "Architecture"), checked on the source with ``ast``:

- only the storage stage touches Optuna's private API (its private modules, and the private
  attributes of its objects: ``study._storage``, ``trial._trial_id``, ...);
- only the Helion adapter (helion_optuna/helion/) imports Helion's internal modules;
- only storage/records.py spells a key that the project writes into Optuna's storage;
- a stage imports only the stages inside it (storage/records.py, the vocabulary of every
  stage, excepted), and no module imports itself back (no cycle);
- no module is over 400 lines, and pyproject.toml installs every package.

The samplers (samplers/, installed as helion_optuna.samplers) are OptunaHub packages that
stand alone: they import nothing of helion_optuna, and the walls do not cover them.
Each check is also run on a snippet that breaks it, so that a check that stopped seeing
anything would fail too.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from helion_optuna.storage import records

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "helion_optuna"
SAMPLERS = ROOT / "samplers"
MAX_LINES = 400

#: The stages, innermost first: a module may import its own stage and those before it. The
#: front ends (the package's top level, decorator.py, helion/, cli/) come last.
STAGES = ("errors", "space", "evaluation", "storage", "tuning")
FRONT_ENDS = len(STAGES)
#: Every stage may import the records: the space records a trial's config, the Helion
#: adapter what Helion repaired, the tuning loop the rest.
VOCABULARY = "helion_optuna.storage.records"
#: Where a word that is a record key appears outside records.py meaning something else:
#: (file, word) -> (how many times, what it means there).
NOT_RECORDS = {
    ("helion_optuna/decorator.py", records.CONFIG):
        (3, "the field of a space made of a list of configs (its index; in cache keys)"),
    ("helion_optuna/storage/fingerprint.py", records.CONFIG):
        (1, "how a cache key describes a Config argument (in cache keys)"),
    ("helion_optuna/tuning/search.py", records.CONFIG): (1, "the unit of the progress bar"),
    ("helion_optuna/storage/study_note.py", records.SAMPLER): (1, "a row of the note's table"),
    ("helion_optuna/cli/command.py", records.FINISHED):
        (1, "a column of the `studies` table"),
    ("helion_optuna/cli/job.py", records.SAMPLER): (2, "tune's option, a field of the job"),
    ("helion_optuna/__init__.py", records.SAMPLER): (1, "the public function, in __all__"),
    ("helion_optuna/helion/hooks.py", records.SAMPLER): (1, "tune's option"),
    ("helion_optuna/helion/searches.py", records.SAMPLER): (1, "tune's option"),
    ("helion_optuna/helion/log.py", records.CONFIG): (1, "a column of Helion's autotune log"),
    ("helion_optuna/tuning/tuner.py", records.SEED): (1, "tune's option, the sampler's seed"),
    ("helion_optuna/helion/settings.py", records.SEED): (1, "tune's option"),
    ("helion_optuna/helion/searches.py", records.SEED): (1, "tune's option"),
}


def module_name(path: Path) -> str:
    """The name that a file of helion_optuna/ or samplers/ is imported as."""
    if path.is_relative_to(SAMPLERS):
        parts = ("helion_optuna", "samplers", *path.relative_to(SAMPLERS).with_suffix("").parts)
    else:
        parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    """Module name -> file, for helion_optuna/ and samplers/."""
    files = [*PACKAGE.rglob("*.py"), *SAMPLERS.rglob("*.py")]
    return {module_name(f): f for f in sorted(files) if "__pycache__" not in f.parts}


def rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "samplers":
        return 0  # they import nothing of ours
    if len(parts) > 1 and parts[1] in STAGES:
        return STAGES.index(parts[1])
    return FRONT_ENDS


def in_storage(module: str) -> bool:
    return module.startswith("helion_optuna.storage.") or module == "helion_optuna.storage"


def imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """(module, name) for every import in ``tree``, functions' included: ``from a import b``
    gives ("a", "b"), ``import a.b`` gives ("a.b", None); relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                package = package if is_package else package[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                yield base, alias.name


def project_imports(tree: ast.AST, module: str, is_package: bool,
                    known: set[str]) -> set[str]:
    """The modules of ours that ``module`` imports (a name imported from a package is the
    package, unless it is a module of it)."""
    out = set()
    for base, name in imports(tree, module, is_package):
        if not base.startswith("helion_optuna"):
            continue
        full = f"{base}.{name}" if name else base
        out.add(full if full in known else base)
    return out


@functools.cache
def optuna_private_names() -> frozenset[str]:
    """The private attributes of Optuna's objects: the methods and the attributes that its
    own code sets (``self._storage = ...``), read from Optuna's source."""
    names = set()
    for path in Path(optuna.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return frozenset(n for n in names if n.startswith("_") and not n.startswith("__"))


def private_optuna_uses(tree: ast.AST, module: str) -> list[str]:
    """Uses of Optuna's private API: a private module or name imported from optuna, an
    Optuna private attribute of an object other than ``self`` or ``cls`` (also through
    getattr, setattr or hasattr)."""
    found = []
    for base, name in imports(tree, module, False):
        parts = [*base.split("."), *([name] if name else [])]
        if parts[0] == "optuna" and any(p.startswith("_") for p in parts[1:]):
            found.append(f"import of {'.'.join(parts)}")
    private = optuna_private_names()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in private):
            found.append(f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def helion_internal_imports(tree: ast.AST, module: str) -> list[str]:
    """Imports of Helion's modules (helion.x.y); ``import helion`` is its public API."""
    found = []
    for base, name in imports(tree, module, False):
        parts = base.split(".")
        if parts[0] == "helion" and (len(parts) > 1 or (name and name[0].islower()
                                                         and name not in ("exc",))):
            found.append(f"import of {base}" + (f" ({name})" if name else ""))
    return found


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are statements (docstrings and the like)."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def spelled_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, key) for every string constant that is a record key, or names one of the
    project's namespaced keys (``helion_optuna:...``), docstrings left out."""
    keys, skip = set(records.KEYS), docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip
            and (node.value in keys or node.value.startswith("helion_optuna:"))]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@functools.cache
def parsed() -> dict[str, tuple[Path, ast.AST]]:
    return {m: (p, ast.parse(p.read_text(), str(p))) for m, p in sources().items()}


def test_only_the_storage_stage_touches_optunas_private_api():
    found = {relative(path): uses for module, (path, tree) in parsed().items()
             if not in_storage(module) and not path.is_relative_to(SAMPLERS)
             for uses in [private_optuna_uses(tree, module)] if uses}
    assert found == {}, "Optuna's private API outside helion_optuna/storage/"


def test_only_the_helion_adapter_imports_helions_internals():
    found = {relative(path): uses for module, (path, tree) in parsed().items()
             if not module.startswith("helion_optuna.helion")
             for uses in [helion_internal_imports(tree, module)] if uses}
    assert found == {}, "Helion's internal modules outside helion_optuna/helion/"


def test_only_the_records_module_spells_a_record_key():
    spelled = Counter((relative(path), key) for module, (path, tree) in parsed().items()
                      if module != VOCABULARY and not path.is_relative_to(SAMPLERS)
                      for _, key in spelled_keys(tree))
    assert spelled == {where: n for where, (n, _) in NOT_RECORDS.items()}, (
        "record keys spelled outside storage/records.py (or NOT_RECORDS is stale)")


def test_stages_import_inward_only_and_nothing_imports_itself_back():
    known = set(parsed())
    graph = {module: project_imports(tree, module, path.name == "__init__.py", known)
             for module, (path, tree) in parsed().items()}
    outward = sorted((a, b) for a, targets in graph.items() for b in targets
                     if rank(b) > rank(a) and b != VOCABULARY)
    assert outward == [], "imports from an inner stage to an outer one"
    assert {m for m in graph[VOCABULARY] if not in_storage(m)} <= {"helion_optuna.errors"}
    samplers = {a: b for a, b in graph.items() if a.startswith("helion_optuna.samplers")}
    assert all(t.startswith("helion_optuna.samplers") for b in samplers.values() for t in b)
    assert cycles(graph) == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (one path per cycle found by a depth-first search)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_module_is_over_400_lines():
    long = {relative(p): n for p, _ in parsed().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_pyproject_installs_every_package():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {module_name(p.parent / "__init__.py") for p in sources().values()
                if p.name == "__init__.py"}
    assert set(setuptools["packages"]) == packages
    assert setuptools["package-dir"] == {"helion_optuna.samplers": "samplers"}


@pytest.mark.parametrize(("source", "check"), [
    ("def f(study):\n    return study._storage\n", private_optuna_uses),
    ("def f(trial):\n    return trial._trial_id\n", private_optuna_uses),
    ("def f(s):\n    return getattr(s, '_backend', s)\n", private_optuna_uses),
    ("from optuna.storages._rdb import models\n", private_optuna_uses),
    ("from optuna.storages import _CachedStorage\n", private_optuna_uses),
    ("from helion.autotuner.base_search import BaseAutotuner\n", helion_internal_imports),
    ("from helion import runtime\n", helion_internal_imports),
    ("def f(t):\n    t.set_user_attr('best_config', 1)\n", spelled_keys),
    ("x = {'helion_optuna:evaluation': 1}\n", spelled_keys),
    ("x = 'helion_optuna:choice:' + str(3)\n", spelled_keys),
])
def test_each_check_sees_what_breaks_it(source, check):
    tree = ast.parse(source)
    found = spelled_keys(tree) if check is spelled_keys else check(tree, "helion_optuna.x")
    assert found, source


def test_the_import_checks_see_what_breaks_them():
    graph = {"helion_optuna.storage.cache": {"helion_optuna.tuning.tuner"},
             "helion_optuna.tuning.tuner": {"helion_optuna.storage.cache"}}
    assert [(a, b) for a, t in graph.items() for b in t if rank(b) > rank(a)] == [
        ("helion_optuna.storage.cache", "helion_optuna.tuning.tuner")]
    assert cycles(graph)
    tree = ast.parse("from helion_optuna.storage import records, cache\n")
    assert project_imports(tree, "helion_optuna.space.x", False, {VOCABULARY}) == {
        VOCABULARY, "helion_optuna.storage"}
