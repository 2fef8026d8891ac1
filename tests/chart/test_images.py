"""The Dockerfiles, checked without a Docker engine: pinned bases, non-root, entry points
that exist, install steps that name real extras, and a build context that holds them."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
DOCKERFILES = {
    "operator": ROOT / "operator" / "Dockerfile",
    "trainer": ROOT / "trainer" / "Dockerfile",
}
OPERATOR_MODULE = "mtd_operator.kube.handlers"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


class Dockerfile:
    def __init__(self, path: Path):
        self.path = path
        self.steps = instructions(path)
        self.args = {}
        for word, rest in self.steps:
            if word == "ARG" and "=" in rest:
                name, _, default = rest.partition("=")
                self.args.setdefault(name, default)

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args[m[1] or m[2]], text)

    def stages(self) -> list[list[tuple[str, str]]]:
        stages: list[list[tuple[str, str]]] = []
        for step in self.steps:
            if step[0] == "FROM":
                stages.append([])
            if stages:
                stages[-1].append(step)
        return stages

    def base_images(self) -> list[str]:
        names: set[str] = set()
        images = []
        for word, rest in self.steps:
            if word != "FROM":
                continue
            parts = rest.split()
            image = self.expand(parts[0])
            if image not in names:
                images.append(image)
            if len(parts) == 3 and parts[1].upper() == "AS":
                names.add(parts[2])
        return images

    def final(self, word: str) -> str:
        found = [rest for w, rest in self.stages()[-1] if w == word]
        assert found, f"{self.path.name}: no {word} in the final stage"
        return found[-1]

    def run_text(self) -> str:
        return " ".join(rest for word, rest in self.steps if word == "RUN")

    def copy_sources(self) -> list[str]:
        sources = []
        for word, rest in self.steps:
            if word == "COPY" and not rest.startswith("--from"):
                sources += rest.split()[:-1]
        return sources


@pytest.fixture(params=DOCKERFILES, ids=str)
def dockerfile(request) -> Dockerfile:
    return Dockerfile(DOCKERFILES[request.param])


def test_multi_stage_with_pinned_bases(dockerfile):
    assert len(dockerfile.stages()) >= 2, "build in one stage, run from a fresh one"
    for image in dockerfile.base_images():
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image}: pin a tag"
        assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"{image}: pin a full version in the tag"


def test_python_base_matches_requires_python(dockerfile):
    python = next(i for i in dockerfile.base_images() if i.startswith("python:"))
    minor = re.match(r"python:(\d+\.\d+)\.", python)[1]
    assert f">={minor}" in PYPROJECT["project"]["requires-python"]


def test_runs_as_non_root(dockerfile):
    user = dockerfile.final("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a numeric non-root uid"
    assert uid == "65532", "the chart's runAsUser"


def test_install_steps_name_existing_extras(dockerfile):
    installs = re.findall(r'\}\[([\w,]+)\]"', dockerfile.run_text())
    assert installs, "the install step installs the wheel with an extra"
    for extra in (name for names in installs for name in names.split(",")):
        assert extra in EXTRAS, f"{extra}: not an extra in pyproject.toml"
    assert "--constraint" in dockerfile.run_text(), "install with the lock as constraints"


def requirement_names(extra: str, seen: set[str] | None = None) -> set[str]:
    """Distribution names an extra pulls in, following self-references."""
    seen = seen or set()
    names = set()
    for requirement in EXTRAS[extra]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)[0].lower()
        nested = re.search(r"\[([\w,]+)\]", requirement)
        if name == PYPROJECT["project"]["name"] and nested:
            for sub in nested[1].split(","):
                if sub not in seen:
                    seen.add(sub)
                    names |= requirement_names(sub, seen)
        else:
            names.add(name)
    return names


def test_operator_image_is_slim():
    text = Dockerfile(DOCKERFILES["operator"]).run_text()
    assert re.findall(r'\}\[(\w+)\]"', text) == ["operator"]
    assert "torch" not in requirement_names("operator")
    assert {"kopf", "kubernetes"} <= requirement_names("operator")


def test_operator_entrypoint_is_kopf_with_the_operator_module():
    entrypoint = json.loads(Dockerfile(DOCKERFILES["operator"]).final("ENTRYPOINT"))
    assert entrypoint == ["kopf", "run", "--standalone", "-m", OPERATOR_MODULE]
    scripts = {
        ep.name: ep.dist.name.lower()
        for ep in importlib.metadata.entry_points(group="console_scripts")
        if ep.dist is not None
    }
    assert scripts.get("kopf") == "kopf" and "kopf" in requirement_names("operator")
    module_file = ROOT / "operator" / Path(*OPERATOR_MODULE.split(".")).with_suffix(".py")
    assert module_file.is_file(), f"the operator image runs {OPERATOR_MODULE}: no {module_file}"


def test_each_image_installs_the_packages_its_commands_import():
    """The build check of each Dockerfile imports the modules of mtd_contract.images; their
    third-party packages must be in the image's extra (kubernetes: `mtd step` publishes)."""
    from mtd_contract.images import IMAGES

    for image, (extra, modules) in IMAGES.items():
        text = Dockerfile(DOCKERFILES[image]).run_text()
        assert f"mtd_contract.images {image}" in text
        ours = ("mtd_contract", "mtd_operator", "mtd_trainer")
        third_party = {m.split(".")[0] for m in modules if not m.startswith(ours)}
        assert third_party <= requirement_names(extra), image


def test_trainer_entrypoint_module_exists():
    entrypoint = json.loads(Dockerfile(DOCKERFILES["trainer"]).final("ENTRYPOINT"))
    assert entrypoint == ["python", "-m", "mtd_trainer"]
    assert (ROOT / "trainer" / "mtd_trainer" / "__main__.py").is_file()


def test_trainer_base_torch_is_the_pinned_torch():
    """torch comes from the CUDA base image; the extra's pin must name the same version."""
    dockerfile = Dockerfile(DOCKERFILES["trainer"])
    torch_image = next(i for i in dockerfile.base_images() if i.startswith("pytorch/pytorch:"))
    base_version = torch_image.split(":")[1].split("-")[0]
    pins = [r for r in EXTRAS["trainer"] if re.match(r"torch\b", r)]
    assert pins == [f"torch=={base_version}"]
    assert re.search(r"-cuda\d+\.\d+-cudnn\d+-runtime$", torch_image), "a CUDA runtime base"
    # the cuda extra (bitsandbytes) only here, never in the CPU dev environment
    assert re.findall(r'\}\[([\w,]+)\]"', dockerfile.run_text()) == ["trainer,cuda"]
    assert "cuda" not in re.findall(r"\[([\w,]+)\]", EXTRAS["dev"][0])[0].split(",")
    assert "grep -v -E '^(torch|" in dockerfile.run_text(), "the lock's CPU torch is dropped"


def dockerignore_excludes(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; a match on a parent folder counts."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
            patterns.append((negate, re.compile(f"^{regex}$")))
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def wheel_inputs() -> set[str]:
    """What `pip wheel .` reads: pyproject, the readme and the package folders."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    return {"pyproject.toml", PYPROJECT["project"]["readme"], "requirements.lock", *find["where"]}


def test_copied_sources_exist_and_are_in_the_context(dockerfile):
    sources = {source.rstrip("/") for source in dockerfile.copy_sources()}
    assert wheel_inputs() <= sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"


def test_context_keeps_out_local_state():
    for path in [
        ".git",
        ".venv",
        "tools/bin/helm",
        "tests",
        "examples",
        ".cache",
        "workspace",
        "operator/mtd_operator/__pycache__",
        "multitask_operator.egg-info",
    ]:
        assert dockerignore_excludes(path), path


def test_wheel_builds_from_the_docker_context(tmp_path):
    """The files the context keeps are enough to build the wheel, with both packages."""
    context = tmp_path / "context"
    for source in wheel_inputs():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(
                path,
                context / source,
                ignore=lambda folder, names: [
                    n
                    for n in names
                    if dockerignore_excludes(str((Path(folder) / n).relative_to(ROOT)))
                ],
            )
        else:
            context.mkdir(exist_ok=True)
            shutil.copy(path, context / source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(context),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "wheels").glob("multitask_operator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "mtd_contract/config.py",
        "mtd_operator/config.py",
        "mtd_operator/cli.py",
        "mtd_trainer/__main__.py",
    } <= names
    assert not any("__pycache__" in n for n in names)
