"""Check a built sdist and wheel against the checkout: every module of src/lfmsl is packaged, nothing else
is, and the metadata says what pyproject.toml says. Usage: python .ci/check_dist.py DIST_FOLDER"""

from __future__ import annotations

import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def problems(dist: Path) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    modules = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "lfmsl").rglob("*.py")}
    found = []
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {dist}, found {[p.name for p in dist.iterdir()]}"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(wheel.read(info).decode())
        entry_points = wheel.read(info.replace("METADATA", "entry_points.txt")).decode()
    packaged = {n for n in names if n.startswith("lfmsl/") and n.endswith(".py")}
    strays = {n for n in names if not n.startswith(("lfmsl/", "lfmsl-"))}
    found += [f"the wheel lacks {m}" for m in sorted(modules - packaged)]
    found += [f"the wheel holds {m}, which the checkout does not" for m in sorted(packaged - modules)]
    found += [f"the wheel holds {n} outside the package" for n in sorted(strays)]
    if meta["Name"] != project["name"] or meta["Version"] != project["version"]:
        found.append(f"the wheel is {meta['Name']} {meta['Version']}, pyproject.toml says {project['name']} {project['version']}")
    if meta["Requires-Python"] != project["requires-python"]:
        found.append(f"the wheel requires Python {meta['Requires-Python']}, pyproject.toml {project['requires-python']}")
    runtime = {str(Requirement(r)) for r in meta.get_all("Requires-Dist", []) if "extra ==" not in r}
    wanted = {str(Requirement(r)) for r in project["dependencies"]}
    if runtime != wanted:
        found.append(f"the wheel's dependencies differ from pyproject.toml: {sorted(runtime ^ wanted)}")
    if "lfmsl = lfmsl.__main__:main" not in entry_points:
        found.append("the wheel has no `lfmsl` console script")
    with tarfile.open(sdists[0]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ["pyproject.toml", "README.md", *(f"src/{m}" for m in sorted(modules))]:
        if needed not in members:
            found.append(f"the sdist lacks {needed}")
    return found


if __name__ == "__main__":
    dist = Path(sys.argv[1])
    found = problems(dist)
    for line in found:
        print("check_dist:", line, file=sys.stderr)
    if not found:
        wheel = next(dist.glob("*.whl"))
        print(f"check_dist: {wheel.name} ({wheel.stat().st_size / 1024:.0f} KiB) and {next(dist.glob('*.tar.gz')).name} hold "
              "every module of src/lfmsl and the metadata of pyproject.toml")
    sys.exit(1 if found else 0)
