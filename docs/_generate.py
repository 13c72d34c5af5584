"""Write the generated pages: the API reference and the catalog tables.

Everything public is found from the package: the root's ``__all__``, each
namespace's ``__all__``, and the registries of configurable classes. The
pages land in ``docs/api/`` and ``docs/guides/_catalog_tables.md`` (both
ignored by git) and are rewritten on every build.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from pathlib import Path
from typing import Any

import gradchain as gc
from gradchain.core.registry import Registry

#: Namespaces documented on their own page, in reading order.
NAMESPACES = [
    "optimizers", "modules", "regularizers", "constraints", "schedules", "wrappers",
    "training", "federated", "privacy", "fisher", "persistence", "core", "tree",
]
#: Families shown in the catalog: (title, namespace holding the registry).
FAMILIES = [
    ("Modules", "modules"), ("Regularizers", "regularizers"),
    ("Constraints", "constraints"), ("Schedulers", "schedules"), ("Wrappers", "wrappers"),
]


def public_names() -> dict[str, list[str]]:
    """``{page: [qualified name, ...]}`` for every public name of the package."""
    pages = {"gradchain": [f"gradchain.{n}" for n in gc.__all__ if not _is_namespace(n)]}
    for ns in NAMESPACES:
        module = getattr(gc, ns)
        pages[ns] = [f"{module.__name__}.{n}" for n in module.__all__]
    return pages


def _is_namespace(name: str) -> bool:
    return isinstance(getattr(gc, name), types.ModuleType)


def _resolve(qualified: str) -> Any:
    module_name, _, attr = qualified.rpartition(".")
    module = gc if module_name == "gradchain" else _module(module_name)
    return getattr(module, attr)


def _module(name: str) -> types.ModuleType:
    import importlib

    return importlib.import_module(name)


def _directive(qualified: str) -> str:
    obj = _resolve(qualified)
    if isinstance(obj, types.ModuleType):
        return ""  # a namespace inside a namespace: it has its own page
    if inspect.isclass(obj):
        return f".. autoclass:: {qualified}\n"
    if callable(obj) and not isinstance(obj, Registry):
        return f".. autofunction:: {qualified}\n"
    module, _, short = qualified.rpartition(".")
    return f".. py:data:: {short}\n   :module: {module}\n   :value: {obj!r}\n\n   {data_doc(qualified)}\n"


def data_doc(qualified: str) -> str:
    """The ``#:`` comment above a public constant, in whichever module defines it."""
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    module_name, _, attr = qualified.rpartition(".")
    module = _module(module_name)
    obj = getattr(module, attr)
    candidates = [module.__name__]
    if hasattr(module, "__path__"):
        candidates += [f"{module.__name__}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    for name in candidates:
        if getattr(_module(name), attr, None) is not obj:
            continue
        lines = ModuleAnalyzer.for_module(name).find_attr_docs().get(("", attr))
        if lines:
            return " ".join(line.strip() for line in lines if line.strip())
    return ""


def _page(title: str, module: str | None, names: list[str], homes: dict[int, str]) -> str:
    """One API page; an object documented on an earlier page gets a link to it."""
    lines = [title, "=" * len(title), ""]
    if module:
        lines += [f".. automodule:: {module}", "   :no-members:", ""]
    for qualified in names:
        obj = _resolve(qualified)
        home = homes.get(id(obj))
        short = qualified.rpartition(".")[2]
        if isinstance(obj, types.ModuleType):
            lines += [f"``{short}``: a namespace with its own page.", ""]
        elif home is not None:
            lines += [f".. py:data:: {qualified}", "   :no-index:", "",
                      f"   The same object as :obj:`{home}`.", ""]
        else:
            homes[id(obj)] = qualified
            lines += [_directive(qualified)]
    return "\n".join(lines) + "\n"


def write_api(docs: Path) -> None:
    out = docs / "api"
    out.mkdir(exist_ok=True)
    pages = public_names()
    toc = ["API reference", "=============", "",
           "Every public name, generated from the docstrings. ``gc`` is ``import gradchain as gc``.",
           "", ".. toctree::", "   :maxdepth: 1", "", "   gradchain"]
    homes: dict[int, str] = {}
    _write(out / "gradchain.rst", _page("gc (the root)", "gradchain", pages["gradchain"], homes))
    for ns in NAMESPACES:
        module = getattr(gc, ns).__name__
        _write(out / f"{ns}.rst", _page(f"gc.{ns}", module, pages[ns], homes))
        toc.append(f"   {ns}")
    _write(out / "index.rst", "\n".join(toc) + "\n")


def _fields(cls: type) -> str:
    parts = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            parts.append(f"`{f.name}={f.default!r}`")
        elif f.default_factory is not dataclasses.MISSING:
            parts.append(f"`{f.name}={f.default_factory()!r}`")
        else:
            parts.append(f"`{f.name}` (required)")
    return ", ".join(parts) or "none"


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("|", "\\|")


def _public_home(cls: type) -> str:
    for ns in NAMESPACES:
        module = getattr(gc, ns)
        if getattr(module, cls.__name__, None) is cls and cls.__name__ in module.__all__:
            return f"{module.__name__}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def write_catalog(docs: Path) -> None:
    lines = []
    for title, ns in FAMILIES:
        registry = getattr(gc, ns).registry
        lines += [f"### {title}", "", "| name | class | hyper-parameters (defaults) | what it does |",
                  "|---|---|---|---|"]
        for name in sorted(registry):
            cls = registry[name]
            lines.append(f"| `{name}` | {{class}}`~{_public_home(cls)}` | {_fields(cls)} | {_summary(cls)} |")
        lines.append("")
    _write(docs / "guides" / "_catalog_tables.md", "\n".join(lines) + "\n")


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:  # keep mtimes: no needless rebuilds
        path.write_text(text)


def write_all(docs: Path) -> None:
    write_api(docs)
    write_catalog(docs)
