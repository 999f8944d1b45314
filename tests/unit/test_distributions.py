"""The product and its test kit are two distributions: the product never imports the kit, ships
its migrations as package data, and its prompts command names a missing tool instead of
installing it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import siaga112
from siaga112 import prompts
from siaga112.records.migrate import migrations_dir

PRODUCT = Path(siaga112.__file__).resolve().parent


def test_no_module_of_the_product_imports_the_test_kit() -> None:
    offenders = []
    for path in sorted(PRODUCT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("siaga112_testkit")]
    assert offenders == []


def test_the_migrations_are_found_as_package_data() -> None:
    directory = migrations_dir()
    assert (directory / "alembic.ini").is_file()
    assert (directory / "env.py").is_file()
    assert sorted(p.name for p in (directory / "versions").glob("0*.py"))[0].startswith("0001_")


def test_prompts_name_the_missing_tool_and_install_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(prompts.shutil, "which", lambda tool: None)
    with pytest.raises(prompts.MissingTool, match="espeak-ng, sox not installed"):
        prompts.build_prompts(tmp_path / "sounds")
    assert prompts.main([str(tmp_path / "sounds")]) == 1
    assert "apt-get install espeak-ng sox" in capsys.readouterr().err
