"""`ocrtrain.procman` is the core's one public face: every name it exports resolves, lazily."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import ocrtrain.procman as face


def test_every_exported_name_resolves_to_its_home() -> None:
    assert set(face.__all__) == set(face._HOME)
    assert sum(map(len, face._EXPORTS.values())) == len(face._HOME), "a name listed twice"
    for name in face.__all__:
        home = importlib.import_module(f"ocrtrain.procman.{face._HOME[name]}")
        assert getattr(face, name) is getattr(home, name), name


def test_no_exported_name_is_also_a_submodule() -> None:
    # Importing a submodule sets the package attribute of that name, hiding an export.
    submodules = {m.name for m in pkgutil.iter_modules(face.__path__)}
    assert not submodules & set(face.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = face.NoSuchThing  # type: ignore[attr-defined]


def test_the_face_loads_only_what_is_used() -> None:
    code = (
        "import sys; from ocrtrain.procman import Journal, ProcessTable; "
        "print('ocrtrain.procman.supervisor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


CONSUMERS = ("monitor", "web", "train", "dist")


def test_consumers_import_no_submodule_of_the_core() -> None:
    # The ruff banned-api lists name today's submodules; this also catches tomorrow's.
    import ast
    from pathlib import Path

    root = Path(face.__file__).parent.parent
    runner = root.parent.parent / "runners" / "train.py"  # the trainer's entry point
    found = []
    for package in CONSUMERS:
        for path in sorted((root / package).rglob("*.py")) + [runner] * (package == "train"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                found += [f"{path.name}: {n}" for n in names if n.startswith("ocrtrain.procman.")]
    assert found == []
