"""Reproducible installs: requirements.lock pins every dependency, and the venv is what it says.

`make venv` installs the lock (hashes checked, nothing resolved) and then the project with
`--no-deps`; `make lock` writes the lock from pyproject.toml. These tests read the files a
fresh clone has and the venv the tests run in.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        m = PIN.match(line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    """A dependency added to pyproject.toml without `make lock` fails here, by name."""
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement}: run `make lock`"
        )
        for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
            if name == "psycopg":
                assert f"psycopg-{extra}" in pins, extra


def test_the_lock_is_portable_pins_with_hashes_and_no_local_source() -> None:
    """Only `name==version` lines with their hashes: no index, no path, no URL of this machine."""
    text = LOCK.read_text()
    assert "file:" not in text and "/opt/" not in text and "://" not in text
    requirement_lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", "--hash"))
    ]
    for line in requirement_lines:
        assert PIN.match(line), f"not a pin: {line!r}"
        assert line.rstrip().endswith("\\"), f"a pin without hashes: {line!r}"
    assert "make lock" in text.splitlines()[1], "the header says how to update it"


def test_the_venv_has_exactly_the_locked_versions() -> None:
    """What the tests run on is what a fresh machine gets from the lock."""
    pins = _pins()
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version)
        for d in metadata.distributions()
        if d.metadata["Name"] and canonicalize_name(d.metadata["Name"]) != "chatops"
    }
    bootstrap = {"pip", "setuptools", "wheel"}  # the venv's own installer, not the project's
    assert {n: v for n, v in installed.items() if n not in bootstrap} == pins


def test_make_installs_from_the_lock_and_the_project_without_resolving() -> None:
    """The venv recipe (dry run): the locked set with hashes, then the project with --no-deps."""
    dry = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "--require-hashes -r requirements.lock" in dry
    assert "install --quiet --no-deps -e ." in dry
    assert re.search(r"install[^\n]*'\.\[dev\]'", dry) is None  # never resolved from pyproject.toml
    lock = subprocess.run(["make", "-n", "lock"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform linux" in lock
    assert "--generate-hashes" in lock and "index-url" not in lock
