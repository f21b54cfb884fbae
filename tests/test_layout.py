"""The README's layout is true: each library module imports only modules listed above it there (deferred imports
inside functions included), and every module of the package is listed. The faces (``__init__``, ``__main__``,
``cli``) sit on top of the library and may import any of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ptuning"
FACES = {"ptuning", "ptuning.__main__", "ptuning.cli"}


def layout_order() -> list[str]:
    """The package's modules in the order the README's layout block lists them (``serving.x`` for serving's)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.split("## Layout", 1)[1].split("```", 2)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ptuning/"))
    order: list[str] = []
    for i, line in enumerate(lines[start + 1 :], start + 1):
        if line and not line.startswith(" "):
            break  # tests/, examples/ ... follow the package
        if not line.startswith("  ") or line.startswith("   "):
            continue  # a description's continuation line
        head, description = (re.split(r"\s{2,}", line.strip(), maxsplit=1) + [""])[:2]
        order += re.findall(r"([a-z_]+)\.py", head)
        if head.startswith("serving/"):
            order.append("serving")
            more = [description] + [x for x in lines[i + 1 :] if x.startswith("   ")]
            order += [f"serving.{m}" for m in re.findall(r"([a-z_]+)\.py", " ".join(more))]
    return order


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """The ptuning modules the file at ``path`` (or ``source`` as if it were there) imports anywhere in it, as
    ``ptuning.x`` / ``ptuning.serving.y``."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ptuning")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ptuning"):
                continue
            if node.module is None or target in ("ptuning", "ptuning.serving"):  # from . import x: x is a module
                found |= {f"{target}.{a.name}" for a in node.names if (PACKAGE.parent / target.replace(".", "/") /
                                                                       f"{a.name}.py").exists()}
            else:
                found.add(target)
    return found


def rank_of(order: list[str]) -> dict[str, int]:
    return {f"ptuning.{name}": i for i, name in enumerate(order)}


def test_the_layout_lists_every_module_of_the_package():
    order = layout_order()
    listed = {f"ptuning.{n}" for n in order}
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")} - FACES - {"ptuning.serving"}
    assert modules - listed == set(), "add these modules to README.md's layout, where their imports put them"


def upward_imports(path: Path, ranks: dict[str, int], source: str | None = None) -> list[str]:
    name = module_name(path)
    if name in FACES or name == "ptuning.serving":
        return []
    out = []
    for target in sorted(imported_modules(path, source)):
        if target in ("ptuning", "ptuning.serving", name):
            continue
        if target in FACES or ranks.get(target, -1) > ranks[name]:
            out.append(f"{name} imports {target}")
    return out


def test_no_import_runs_back_up_the_layout():
    ranks = rank_of(layout_order())
    upward = [line for path in sorted(PACKAGE.rglob("*.py")) for line in upward_imports(path, ranks)]
    assert upward == [], "imports that run back up README.md's layout"


def test_the_checker_sees_deferred_and_relative_imports_that_run_up():
    ranks = rank_of(layout_order())
    assert ranks["ptuning.errors"] < ranks["ptuning.config"] < ranks["ptuning.model"] < ranks["ptuning.plan"]
    assert ranks["ptuning.plan"] < ranks["ptuning.train"] < ranks["ptuning.serving.engine"]
    deferred = "from .errors import ConfigError\n\ndef f():\n    from .train import train\n    import ptuning.cli\n"
    assert upward_imports(PACKAGE / "config.py", ranks, deferred) == [
        "ptuning.config imports ptuning.cli", "ptuning.config imports ptuning.train"]
    climbing = "from ..plan import Plan\nfrom . import http\n"
    assert upward_imports(PACKAGE / "serving" / "registry.py", ranks, climbing) == [
        "ptuning.serving.registry imports ptuning.serving.http"]
