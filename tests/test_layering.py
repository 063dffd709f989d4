"""The imports run one way: ``ingest/`` (RTMP → packets) → ``transcoder/`` (packets →
renditions → CMAF, live index) ← ``platform/`` (Django, serving, storage wiring).

Read from the source with ``ast``, so an import inside a function counts as much as one at
the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_APPS = frozenset(
    path.name for path in (ROOT / "platform").iterdir()
    if path.is_dir() and not path.name.startswith((".", "_"))
)
FRAMEWORKS = frozenset({"django", "rest_framework", "channels", "celery", "daphne"})


def imported_roots(source: str) -> set[str]:
    """The top-level names a module imports (relative imports excluded)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def violations(package: str, forbidden: frozenset[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_roots(path.read_text()) & forbidden
        found.extend(f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad))
    return found


def test_the_checker_sees_imports_anywhere_in_a_module() -> None:
    source = (
        "import os\nfrom ingest.sink import X\n"
        "def f():\n    import django.db\n    from . import y\n"
    )
    assert imported_roots(source) == {"os", "ingest", "django"}


def test_the_platform_apps_are_known() -> None:
    assert {"delivery", "streams", "golive"} <= PLATFORM_APPS


def test_transcoder_imports_neither_ingest_nor_the_platform() -> None:
    assert violations("transcoder", frozenset({"ingest"}) | PLATFORM_APPS | FRAMEWORKS) == []


def test_ingest_imports_nothing_from_the_platform() -> None:
    assert violations("ingest", PLATFORM_APPS | FRAMEWORKS) == []


@pytest.mark.parametrize("package", ["ingest", "transcoder"])
def test_no_package_shadows_the_standard_platform_module(package: str) -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert (ROOT / package / "__init__.py").exists()
