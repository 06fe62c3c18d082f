"""What pyproject.toml promises about Python matches what its pinned dependencies support."""

import tomllib
from importlib.metadata import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
MINORS = [f"3.{minor}" for minor in range(6, 20)]


def allowed(specifier: str) -> set[str]:
    return {version for version in MINORS if SpecifierSet(specifier).contains(version)}


def mismatch(requires_python: str, dependencies: list[str]) -> str | None:
    """None where `requires_python` allows exactly the Python versions every installed dependency allows."""
    theirs, checked = set(MINORS), []
    for line in dependencies:
        name = Requirement(line).name
        needed = metadata(name).get("Requires-Python")  # PackageNotFoundError: a dependency is not installed
        if needed:
            theirs &= allowed(needed)
            checked.append(f"{name} {needed}")
    ours = allowed(requires_python)
    if ours == theirs:
        return None
    return f"requires-python {requires_python!r} allows {sorted(ours)}; the dependencies allow {sorted(theirs)}: {checked}"


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_requires_python_is_exactly_what_the_installed_dependencies_support():
    problem = mismatch(project()["requires-python"], project()["dependencies"])
    assert problem is None, problem


def test_the_check_catches_a_range_wider_or_narrower_than_the_dependencies():
    assert "3.10" in mismatch(">=3.10", project()["dependencies"])  # jax 0.10 needs 3.11
    assert mismatch(">=3.12", project()["dependencies"]) is not None
