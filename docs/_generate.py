"""Write the generated pages: the API reference and the catalog tables.

Everything public is found from the package: the root's ``__all__``, each
namespace's ``__all__``, and the registries of configurable classes. The
pages land in ``docs/api/`` and ``docs/guides/_catalog_tables.md`` (both
ignored by git) and are rewritten on every build.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
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
#: The guide pages cut from the README: ``{page: (title, [README "## " sections])}``.
#: ``"@catalog_tables"`` stands for the generated catalog tables.
GUIDES: dict[str, tuple[str, list[str]]] = {
    "getting_started": ("Getting started", ["Set up", "Quickstart", "Dependencies", "License and changes"]),
    "guides/optimizer": ("The protocol and the Optimizer", ["The protocol", "The Optimizer", "Parameter groups"]),
    "guides/catalog": ("The catalog", ["What is in it", "@catalog_tables", "The declearn catalog and EWC",
                                       "Gradient geometry (rai-toolbox)"]),
    "guides/declearn": ("Moving between declearn and gradchain", ["declearn interop"]),
    "guides/federated": ("Federated learning", ["Federated learning"]),
    "guides/flower": ("Federations on Flower", ["Federated learning on Flower"]),
    "guides/training": ("Training, privacy, wrappers and checkpoints",
                        ["Training integration", "Precision, complex numbers, optax drop-in"]),
    "guides/scaling_out": ("Scaling out with jax.distributed", ["Scaling out"]),
    "guides/guarantees": ("Guarantees: validation, checkpoints, the command line", ["Guarantees"]),
    "guides/performance": ("Performance and limits", ["Performance", "Limits"]),
}
#: README sections the site shows elsewhere (the home page) or not at all (repository matters).
NOT_IN_GUIDES = {"How it maps", "Notebooks", "Layout", "Deprecated names"}
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
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:  # keep mtimes: no needless rebuilds
        path.write_text(text)


def readme_sections(readme: str) -> dict[str, str]:
    """``{title: body}`` of the README's ``## `` sections (the intro before the first is left out)."""
    parts = re.split(r"^## (.+)$", readme, flags=re.M)
    return {title.strip(): body.strip("\n") for title, body in zip(parts[1::2], parts[2::2])}


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def _relink(match: re.Match[str], docs: Path, page: str, home: dict[str, str]) -> str:
    """A README link, pointed from guide ``page``: anchors to the page holding them, files to the repo."""
    here = (docs / page).parent
    target = match.group(1)
    if target.startswith("#"):
        slug = target[1:]
        if slug not in home:
            raise ValueError(f"README links to #{slug}, which no guide page holds")
        path = os.path.relpath(docs / f"{home[slug]}.md", here) if home[slug] != page else ""
        return f"]({path}#{slug})"
    if not re.match(r"[a-z]+:", target):  # a file of the repository
        return f"]({os.path.relpath(docs / target, here)})"
    return match.group(0)


def write_guides(docs: Path) -> None:
    """Write each guide page from its README sections, with links pointed at the right page."""
    sections = readme_sections((docs.parent / "README.md").read_text())
    unplaced = set(sections) - NOT_IN_GUIDES - {t for _, titles in GUIDES.values() for t in titles}
    if unplaced:
        raise ValueError(f"README sections on no page of the site (docs/_generate.py GUIDES): {sorted(unplaced)}")
    home = {_slug(t): page for page, (_, titles) in GUIDES.items() for t in titles}
    for page, (title, titles) in GUIDES.items():
        link = functools.partial(_relink, docs=docs, page=page, home=home)
        body = [f"# {title}", ""]
        for section in titles:
            if section == "@catalog_tables":
                body += ["## Every registered class, its arguments and defaults", "",
                         "Generated from the registries; each class's page in the API reference gives its math.",
                         "", "```{include} _catalog_tables.md", "```", ""]
                continue
            if section not in sections:
                raise ValueError(f"docs/_generate.py GUIDES names README section {section!r}, which does not exist")
            text = re.sub(r"\]\(([^)\s]+)\)", link, sections[section])
            body += [f"## {section}", "", text, ""]
        _write(docs / f"{page}.md", "\n".join(body))


def write_all(docs: Path) -> None:
    write_api(docs)
    write_catalog(docs)
    write_guides(docs)
