"""Design rules of geofm and gfm_bench, checked on the source (AST) of every module.

* layers: ``geofm.kernels`` and ``geofm.data`` are the lowest layers, each on its own; then
  ``geofm.models``, ``geofm.tasks``, ``geofm.inference`` and ``geofm.cli``. A module imports
  only its own layer and lower ones; the root package ``geofm`` may import any layer, and
  every layer may import the root package (which holds ``__version__``).
* ``geofm.kernels`` imports only the standard library, torch, triton and itself.
* nothing under ``geofm`` imports ``gfm_bench``: the benchmark builds on geofm, not the other
  way round.
* no module imports a ``_private`` name of another first-party module (nor reads one as
  ``module._name``), and a private module (``geofm/kernels/_common.py``) is imported only
  from inside its own package.

Every import counts, wherever it is written (module level, inside a function, under
``TYPE_CHECKING`` or ``try``), and so does ``importlib.import_module("<constant>")``. Relative
imports are resolved against the importing module. Each rule has a self-test that feeds it a
small synthetic tree holding a violation, so that a checker that finds nothing fails.
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("geofm", "gfm_bench")

#: the layers of geofm, lowest first; a module imports its own layer and lower ranks only
LAYER_RANK = {
    "geofm.kernels": 0,
    "geofm.data": 0,
    "geofm.models": 1,
    "geofm.tasks": 2,
    "geofm.inference": 3,
    "geofm.cli": 4,
    "geofm": 5,  # the root package itself (geofm/__init__.py)
}

#: what geofm.kernels may import besides the standard library and itself
KERNEL_THIRD_PARTY = frozenset({"torch", "triton"})


# --------------------------------------------------------------------------------------------
# The checker


@dataclass(frozen=True)
class Import:
    """One imported module or name, as written at ``path:line`` of module ``importer``.

    ``target`` is the absolute dotted module imported (a submodule named in ``from pkg
    import mod`` is the target itself); ``name`` the name taken from it (``None`` when the
    module itself is imported); ``text`` the statement as written, for messages.
    """

    path: str
    line: int
    importer: str
    target: str
    name: str | None
    text: str

    def where(self) -> str:
        return f"{self.path}:{self.line}: `{self.text}`"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def load_modules(root: Path, packages=PACKAGES) -> dict[str, tuple[str, ast.Module, bool]]:
    """Every ``.py`` under ``root/<package>`` as ``name -> (relative path, AST, is a
    package)``; a file that does not parse is an error naming it."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            except SyntaxError as err:
                raise AssertionError(f"{rel}:{err.lineno}: does not parse: {err.msg}") from err
            modules[_module_name(path, root)] = (rel, tree, _is_package(path))
    return modules


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level - 1 > len(base) - 1:
        raise ValueError(
            f"relative import of level {level} goes above the top package from {importer}"
        )
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _alias_text(alias: ast.alias) -> str:
    return alias.name + (f" as {alias.asname}" if alias.asname else "")


def _constant_import_call(node: ast.AST) -> str | None:
    """The module of ``importlib.import_module("m")`` / ``__import__("m")`` with a constant."""
    if not (
        isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return node.args[0].value if name in ("import_module", "__import__") else None


def imports_of(modules: dict[str, tuple[str, ast.Module, bool]]) -> list[Import]:
    """Every import of every module, one :class:`Import` per module or name imported."""
    found = []
    for importer, (path, tree, is_package) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [
                    Import(path, node.lineno, importer, a.name, None, f"import {_alias_text(a)}")
                    for a in node.names
                ]
            elif isinstance(node, ast.ImportFrom):
                module = (
                    _resolve_relative(importer, is_package, node.level, node.module)
                    if node.level
                    else node.module
                )
                written = "." * node.level + (node.module or "")
                for a in node.names:
                    sub = f"{module}.{a.name}"
                    target, name = (sub, None) if sub in modules else (module, a.name)
                    found.append(
                        Import(
                            path,
                            node.lineno,
                            importer,
                            target,
                            name,
                            f"from {written} import {_alias_text(a)}",
                        )
                    )
            elif (module := _constant_import_call(node)) is not None:
                found.append(
                    Import(path, node.lineno, importer, module, None, f"import_module({module!r})")
                )
    return found


def _first_party(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _is_private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def layer_of(module: str) -> str | None:
    """The layer of a geofm module: the longest key of :data:`LAYER_RANK` it is under."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYER_RANK:
            return ".".join(parts[:n])
    return None


def layer_violations(modules, imports: list[Import]) -> list[str]:
    """geofm modules that belong to no layer, and imports of geofm modules that reach a
    layer above their own or a sibling layer of the same rank."""
    bad = [
        f"{path}: module {name} belongs to no layer; place it in LAYER_RANK of "
        "tests/test_design_rules.py"
        for name, (path, _, _) in modules.items()
        if name.split(".")[0] == "geofm" and layer_of(name) == "geofm" and name != "geofm"
    ]
    for imp in imports:
        own = layer_of(imp.importer)
        if imp.importer.split(".")[0] != "geofm" or imp.target.split(".")[0] != "geofm":
            continue
        if own == "geofm" and imp.importer != "geofm":
            continue  # reported above
        target = layer_of(imp.target)
        if target in (own, "geofm"):
            continue
        if target is None or LAYER_RANK[target] >= LAYER_RANK[own]:
            bad.append(
                f"{imp.where()}: layer {own} (rank {LAYER_RANK[own]}) imports "
                f"{imp.target}, of layer {target} (rank "
                f"{LAYER_RANK.get(target, '?')}); a layer imports only itself and "
                "lower ranks"
            )
    return sorted(set(bad))


def kernel_dependency_violations(imports: list[Import]) -> list[str]:
    """Imports of geofm.kernels modules outside the standard library, torch, triton and
    geofm.kernels itself."""
    bad = []
    for imp in imports:
        if layer_of(imp.importer) != "geofm.kernels":
            continue
        top = imp.target.split(".")[0]
        if (
            top in sys.stdlib_module_names
            or top in KERNEL_THIRD_PARTY
            or imp.target == "geofm.kernels"
            or imp.target.startswith("geofm.kernels.")
        ):
            continue
        bad.append(
            f"{imp.where()}: geofm.kernels imports {imp.target}; it may import only "
            f"the standard library, {', '.join(sorted(KERNEL_THIRD_PARTY))} and itself"
        )
    return sorted(set(bad))


def bench_import_violations(imports: list[Import]) -> list[str]:
    """Imports of gfm_bench by a module under geofm."""
    return sorted(
        {
            f"{imp.where()}: {imp.importer} imports {imp.target}; geofm must not depend on "
            "gfm_bench"
            for imp in imports
            if imp.importer.split(".")[0] == "geofm" and imp.target.split(".")[0] == "gfm_bench"
        }
    )


def _private_module_owner(module: str) -> str | None:
    """The package that owns the first private part of a dotted module name, if any
    (``geofm.kernels._common`` -> ``geofm.kernels``)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:i])
    return None


def _package_of(module: str, modules) -> str:
    return module if modules[module][2] else module.rpartition(".")[0]


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _private_attribute_reads(modules) -> list[str]:
    """``alias._name`` where ``alias`` is bound in the file to another first-party module."""
    bad = []
    for importer, (path, tree, is_package) in modules.items():
        bound: dict[str, str] = {}  # name in this file -> the first-party module it is
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if _first_party(a.name):
                        bound[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom):
                module = (
                    _resolve_relative(importer, is_package, node.level, node.module)
                    if node.level
                    else node.module
                )
                for a in node.names:
                    if f"{module}.{a.name}" in modules:
                        bound[a.asname or a.name] = f"{module}.{a.name}"
        if not bound:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                owner = _dotted(node.value)
                # `alias._x`, or `geofm.data.readers._x` after `import geofm.data...`
                module = bound.get(owner) or (
                    owner if owner in modules and owner.split(".")[0] in bound else None
                )
                if module and module != importer:
                    bad.append(
                        f"{path}:{node.lineno}: `{owner}.{node.attr}` reads the private "
                        f"name {node.attr} of {module}; make it public in a module "
                        "named for its job"
                    )
    return bad


def private_import_violations(modules, imports: list[Import]) -> list[str]:
    """Private names of other first-party modules imported (or read as ``mod._name``), and
    private modules imported from outside their own package."""
    bad = []
    for imp in imports:
        if not _first_party(imp.target):
            continue
        if imp.name is not None and _is_private(imp.name) and imp.target != imp.importer:
            bad.append(
                f"{imp.where()}: imports the private name {imp.name} of {imp.target}; "
                "make it public in a module named for its job"
            )
        owner = _private_module_owner(imp.target)
        if owner is not None and imp.importer in modules:
            package = _package_of(imp.importer, modules)
            if not (package == owner or package.startswith(owner + ".")):
                bad.append(
                    f"{imp.where()}: imports the private module {imp.target} from "
                    f"{imp.importer}, outside its package {owner}"
                )
    return sorted(set(bad + _private_attribute_reads(modules)))


# --------------------------------------------------------------------------------------------
# The rules on this repository


@functools.lru_cache(maxsize=1)
def _repository():
    modules = load_modules(REPO)
    return modules, imports_of(modules)


def _report(violations: list[str], rule: str) -> str:
    return f"{len(violations)} violation(s) of the rule that {rule}:\n" + "\n".join(violations)


def test_the_checker_sees_every_module():
    modules, imports = _repository()
    assert {"geofm", "geofm.cli", "geofm.kernels.dispatch", "gfm_bench.protocols"} <= set(modules)
    assert any(
        i.importer == "geofm.kernels.dispatch" and i.target == "geofm.kernels._common"
        for i in imports
    ), "relative imports were not resolved"


def test_each_layer_imports_only_itself_and_lower_layers():
    modules, imports = _repository()
    violations = layer_violations(modules, imports)
    assert not violations, _report(
        violations,
        "kernels and data < models < tasks < "
        "inference < cli, each importing only its own and lower",
    )


def test_kernels_import_only_the_standard_library_torch_triton_and_themselves():
    _, imports = _repository()
    violations = kernel_dependency_violations(imports)
    assert not violations, _report(
        violations, "geofm.kernels imports only the standard library, torch, triton and itself"
    )


def test_geofm_never_imports_gfm_bench():
    _, imports = _repository()
    violations = bench_import_violations(imports)
    assert not violations, _report(violations, "nothing under geofm imports gfm_bench")


def test_no_module_imports_a_private_name_of_another():
    modules, imports = _repository()
    violations = private_import_violations(modules, imports)
    assert not violations, _report(
        violations,
        "no module imports a _private name of "
        "another module, nor a private module of another package",
    )


# --------------------------------------------------------------------------------------------
# Self-tests: each rule catches a violation in a small synthetic tree


def _tree(tmp_path: Path, files: dict[str, str]):
    for rel, source in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    modules = load_modules(tmp_path)
    return modules, imports_of(modules)


_LAYERED = {
    "geofm/data/__init__.py": "",
    "geofm/kernels/__init__.py": "",
    "geofm/models/__init__.py": "",
    "geofm/tasks/__init__.py": "",
}


def test_self_test_layers_catch_an_upward_import_inside_a_function(tmp_path):
    modules, imports = _tree(
        tmp_path,
        _LAYERED
        | {
            "geofm/data/readers.py": "def f():\n    from ..tasks import scene\n",
            "geofm/tasks/scene.py": "from geofm.data import readers\nfrom geofm import __version__\n",
            "geofm/models/vit.py": "from ..kernels import dispatch\n",
            "geofm/kernels/dispatch.py": "",
        },
    )
    violations = layer_violations(modules, imports)
    assert len(violations) == 1, violations
    assert violations[0].startswith("geofm/data/readers.py:2: `from ..tasks import scene`")
    assert "layer geofm.data (rank 0) imports geofm.tasks.scene" in violations[0]


def test_self_test_layers_keep_data_and_kernels_apart_and_place_every_module(tmp_path):
    modules, imports = _tree(
        tmp_path,
        _LAYERED
        | {
            "geofm/data/fast.py": "import geofm.kernels\n",
            "geofm/helpers.py": "",
        },
    )
    violations = layer_violations(modules, imports)
    assert any("geofm/data/fast.py:1: `import geofm.kernels`" in v for v in violations)
    assert any("module geofm.helpers belongs to no layer" in v for v in violations)


def test_self_test_kernels_may_not_import_numpy(tmp_path):
    _, imports = _tree(
        tmp_path,
        _LAYERED
        | {
            "geofm/kernels/ops.py": (
                "import math\nimport torch\nimport triton.language as tl\n"
                "from . import _common\n\ndef f():\n    import numpy as np\n"
            ),
            "geofm/kernels/_common.py": "",
        },
    )
    violations = kernel_dependency_violations(imports)
    assert violations == [
        "geofm/kernels/ops.py:7: `import numpy as np`: geofm.kernels imports numpy; it may "
        "import only the standard library, torch, triton and itself"
    ]


def test_self_test_geofm_may_not_import_gfm_bench(tmp_path):
    _, imports = _tree(
        tmp_path,
        _LAYERED
        | {
            "geofm/tasks/scene.py": "import importlib\nm = importlib.import_module('gfm_bench.x')\n",
            "gfm_bench/x.py": "from geofm.tasks import scene\n",
        },
    )
    violations = bench_import_violations(imports)
    assert violations == [
        "geofm/tasks/scene.py:2: `import_module('gfm_bench.x')`: geofm.tasks.scene imports "
        "gfm_bench.x; geofm must not depend on gfm_bench"
    ]


def test_self_test_private_names_and_modules_of_others_are_caught(tmp_path):
    modules, imports = _tree(
        tmp_path,
        _LAYERED
        | {
            "geofm/data/readers.py": "def _helper(): ...\ndef _own(): ...\nx = _own()\n",
            "geofm/data/stats.py": (
                "from .readers import open_raster, _helper\n"
                "from geofm.data import readers\ny = readers._own\n"
            ),
            "geofm/kernels/_common.py": "def interpreted(): ...\n",
            "geofm/kernels/dispatch.py": "from ._common import interpreted\n",
            "geofm/models/vit.py": "from geofm.kernels._common import interpreted\n",
            "gfm_bench/cli.py": "def g():\n    from .suites import _key\n",
            "gfm_bench/suites.py": "_key = 1\n",
        },
    )
    violations = private_import_violations(modules, imports)
    expected = [
        "geofm/data/stats.py:1: `from .readers import _helper`: imports the private name "
        "_helper of geofm.data.readers",
        "geofm/data/stats.py:3: `readers._own` reads the private name _own of geofm.data.readers",
        "geofm/models/vit.py:1: `from geofm.kernels._common import interpreted`: imports the "
        "private module geofm.kernels._common from geofm.models.vit, outside its package "
        "geofm.kernels",
        "gfm_bench/cli.py:2: `from .suites import _key`: imports the private name _key of "
        "gfm_bench.suites",
    ]
    assert len(violations) == len(expected), violations
    for want in expected:
        assert any(v.startswith(want) for v in violations), (want, violations)


def test_self_test_a_file_that_does_not_parse_is_named(tmp_path):
    with pytest.raises(AssertionError, match=r"geofm/data/bad.py:1: does not parse"):
        _tree(tmp_path, {"geofm/data/bad.py": "def (:\n"})
