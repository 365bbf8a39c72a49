"""The package as published: its public names, its metadata, and the floors CI proves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import inpaint

ROOT = Path(__file__).resolve().parent.parent

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_public_name_resolves_to_what_its_module_defines():
    import importlib

    assert inpaint.__all__[0] == "__version__"
    assert set(inpaint.__all__) == {"__version__", *inpaint._EXPORTS}
    for name, module in inpaint._EXPORTS.items():
        assert getattr(inpaint, name) is getattr(importlib.import_module(module), name), name
    assert set(inpaint.__all__) <= set(dir(inpaint))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        inpaint.nothing  # noqa: B018


def test_import_inpaint_and_star_import_stay_light_until_a_name_is_used():
    code = (
        "import sys, inpaint; assert 'torch' not in sys.modules, 'import inpaint'; "
        "from inpaint import read_image, make_mask; assert 'torch' not in sys.modules, 'io and masks'; "
        "from inpaint import load_inpainter; load_inpainter('telea'); print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'diffusers', 'transformers', 'peft', 'accelerate'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # a classical method pulls in no diffusion library


def test_the_package_is_typed():
    assert (Path(inpaint.__file__).parent / "py.typed").is_file()


def test_the_distribution_name_is_not_the_unrelated_inpaint_on_pypi(project):
    assert project["name"] != "inpaint"
    assert project["scripts"]["inpaint"] == "inpaint.cli.app:main"
    assert project["name"] in (ROOT / "README.md").read_text()


def test_metadata_declares_the_licence_and_no_placeholder_urls(project):
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # setuptools refuses both
    assert "Environment :: GPU :: NVIDIA CUDA" in project["classifiers"]
    assert "https://github.com/inpaint/inpaint" not in (ROOT / "pyproject.toml").read_text()


def test_dependencies_have_floors_and_no_caps(project):
    for line in project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]:
        requirement = Requirement(line)
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">="}, f"{line}: a floor (>=) and nothing else"


def test_the_min_versions_constraints_pin_every_floor(project):
    """.ci/constraints-min.txt pins each direct dependency at its pyproject floor (torch and torchvision
    at the CI's versions instead), so the min-versions stage tests the floors that are declared."""
    floors = {}
    for line in project["dependencies"] + project["optional-dependencies"]["test"]:
        requirement = Requirement(line)
        floors[requirement.name] = (next(iter(requirement.specifier)).version, requirement.marker)
    pins = {}
    for line in (ROOT / ".ci/constraints-min.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pin = Requirement(line)
            assert len(pin.specifier) == 1 and next(iter(pin.specifier)).operator == "==", line
            pins[pin.name] = next(iter(pin.specifier)).version
    assert set(pins) == set(floors)
    ci = dict(re.findall(r"^([\w-]+)==(\S+)", (ROOT / ".ci/constraints-ci.txt").read_text(), re.M))
    for name, (floor, _marker) in floors.items():
        expected = ci[name] if name in ("torch", "torchvision") else floor
        assert Version(pins[name]) == Version(expected), (
            f"{name}: constraints-min says {pins[name]}, expected {expected}"
        )


def test_the_readme_has_no_links_that_break_on_the_package_index():
    """Relative links break on the index's page. Pictures are the exception: with no public URL for
    them yet, a screenshot in the checkout shows in the repository, and its alt text on the index."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)", readme)
    relative = [target for bang, _, target in links if not bang and not re.match(r"https?://|#", target)]
    assert not relative, f"README.md links {relative}: relative links break on the index's page"
    for _, alt, target in (link for link in links if link[0] and not re.match(r"https?://", link[2])):
        assert target.startswith("docs/images/") and (ROOT / target).is_file(), target
        assert len(alt.split()) >= 5, f"{target}: the index shows the alt text instead; say what the picture shows"
