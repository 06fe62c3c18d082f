"""What pyproject.toml promises about Python matches what its pinned dependencies support."""

import sys
import tomllib
from importlib.metadata import metadata
from pathlib import Path

import pytest
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


def at_the_lowest_python() -> None:
    """The installed dependencies show their Python floor exactly only on the lowest Python we allow: on a
    newer one pip picks newer releases (numpy's for 3.12 needs 3.12), which say nothing about the floor."""
    floor = min(allowed(project()["requires-python"]), key=lambda v: int(v.split(".")[1]))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != floor:
        pytest.skip(f"checked on Python {floor}, the lowest that requires-python allows; this is {running}")


def test_requires_python_is_exactly_what_the_installed_dependencies_support():
    at_the_lowest_python()
    problem = mismatch(project()["requires-python"], project()["dependencies"])
    assert problem is None, problem


def test_the_check_catches_a_range_wider_or_narrower_than_the_dependencies():
    at_the_lowest_python()
    assert "3.10" in mismatch(">=3.10", project()["dependencies"])  # jax 0.10 needs 3.11
    assert mismatch(">=3.12", project()["dependencies"]) is not None
