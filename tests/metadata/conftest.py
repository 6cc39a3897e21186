"""Bundles for the metadata tests: copies of `base_bundle/` (a small valid
bundle) to break one thing at a time."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BASE = Path(__file__).resolve().parent / "base_bundle"


class BundleDir:
    """A bundle folder under a test's tmp_path, with small editing helpers."""

    def __init__(self, root: Path):
        self.root = root

    def load(self, rel: str) -> Any:
        return json.loads((self.root / rel).read_text(encoding="utf-8"))

    def edit(self, rel: str, change: Callable[[Any], Any]) -> None:
        """Apply `change` to the parsed JSON of `rel` (in place, or return a new value)."""
        data = self.load(rel)
        result = change(data)
        self.save(rel, data if result is None else result)

    def save(self, rel: str, data: Any) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")

    def write(self, rel: str, content: str | bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    def text(self, rel: str) -> str:
        return (self.root / rel).read_text(encoding="utf-8")

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()


@pytest.fixture
def bundle_dir(tmp_path) -> BundleDir:
    root = tmp_path / "sample"
    shutil.copytree(BASE, root)
    return BundleDir(root)
