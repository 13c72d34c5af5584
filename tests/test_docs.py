"""The documentation site: it builds cleanly, documents every public name, and its code runs.

`make docs` builds the full site with the notebooks executed; here the site is
built with notebook execution off (the notebooks run under nbmake in the same
`make test`), with warnings as errors, so a broken include, a malformed
docstring or a missing page fails the suite.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from sphinx.util.inventory import InventoryFile

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
import _generate  # noqa: E402

#: The hand-written pages (the guides are generated from the README at build time).
PAGES = sorted(p for p in DOCS.glob("*.md") if p.stem != "getting_started")


def _blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: str(p.relative_to(DOCS)))
def test_every_code_block_of_a_page_runs_in_order(page):
    namespace: dict = {}
    for i, block in enumerate(_blocks(page)):
        exec(compile(block, f"{page.name}, block {i}", "exec"), namespace)


def test_every_public_name_has_documentation():
    missing = []
    for names in _generate.public_names().values():
        for qualified in names:
            obj = _generate._resolve(qualified)
            if isinstance(obj, types.ModuleType):
                continue
            if inspect.isclass(obj) or callable(obj):
                if not (inspect.getdoc(obj) or "").strip():
                    missing.append(qualified)
            elif not _generate.data_doc(qualified):
                missing.append(qualified)
    assert not missing, f"public names without a docstring or a `#:` comment: {missing}"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
         "-D", "nb_execution_mode=off", "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out / "html"


def test_every_readme_section_is_on_a_page_of_the_site():
    sections = _generate.readme_sections((ROOT / "README.md").read_text())
    placed = {t for _, titles in _generate.GUIDES.values() for t in titles} | _generate.NOT_IN_GUIDES
    assert set(sections) - placed == set(), "add the new README sections to docs/_generate.py GUIDES"
    assert placed - {"@catalog_tables"} - set(sections) == set(), "GUIDES names a README section that is gone"


def test_site_builds_without_warnings_and_indexes_every_public_name(built_site):
    with open(built_site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    indexed = set()
    for kind, entries in inventory.items():
        if kind.startswith("py:"):
            indexed |= set(entries)
    homes: dict[int, str] = {}
    for names in _generate.public_names().values():
        for qualified in names:
            obj = _generate._resolve(qualified)
            if isinstance(obj, types.ModuleType):
                continue
            homes.setdefault(id(obj), qualified)
            assert homes[id(obj)] in indexed, f"{qualified} is not in the API reference"


def test_site_has_every_guide_and_notebook(built_site):
    for page in [p.relative_to(DOCS).with_suffix("") for p in PAGES] + list(_generate.GUIDES):
        html = built_site / f"{page}.html"
        assert html.exists(), html
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        assert (built_site / "notebooks" / notebook.with_suffix(".html").name).exists(), notebook.name
