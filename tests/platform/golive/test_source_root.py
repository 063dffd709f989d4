"""platform/ is a source root, never a package: the standard library's `platform` wins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_platform_folder_is_not_a_package() -> None:
    assert (ROOT / "platform").is_dir()
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_stdlib_platform_and_uuid_import_from_the_repository_root() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import uuid, platform; print(platform.system()); uuid.uuid4()"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Linux"


def test_stdlib_platform_still_wins_with_the_source_root_on_the_path() -> None:
    code = "import platform, django; print(platform.python_version())"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "platform",
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
