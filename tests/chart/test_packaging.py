"""The Dockerfile and the systemd unit.

No Docker daemon runs on these machines, so the image is checked statically: the
instructions are parsed (continuations joined, comments dropped) and checked for pinned,
checksum-verified helm/helmfile/helm-diff, a numeric non-root USER, the HEALTHCHECK and the
default command; every RUN shell script passes `sh -n`; and the helm-diff step itself runs
under /bin/sh with a stand-in `curl` (never the network) to show that a missing or wrong
HELM_DIFF_SHA256 stops the build and a right one installs the plugin that the real helm
then lists. That is the most that can be checked here without building the image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chart.helm import ROOT, require

DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "contrib" / "systemd" / "deploybot.service"


@dataclass
class Instruction:
    stage: int  # index of the FROM it belongs to (-1: before the first FROM)
    op: str
    args: str


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Instruction]]:
    """Global ARG defaults and the instructions, with `\\` continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        op, _, args = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            stage += 1
        if op == "ARG" and stage == -1:
            name, _, default = args.partition("=")
            global_args[name] = default
        out.append(Instruction(stage, op, args.strip()))
    return global_args, out


GLOBAL_ARGS, INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())


def stage_args(stage: int) -> dict[str, str]:
    """ARG defaults declared inside a stage."""
    args = {}
    for ins in INSTRUCTIONS:
        if ins.stage == stage and ins.op == "ARG":
            name, _, default = ins.args.partition("=")
            args[name] = default
    return args


def stages() -> dict[str, int]:
    names = {}
    for ins in INSTRUCTIONS:
        if ins.op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", ins.args, re.I)
            assert m, ins.args
            names[m.group(2) or f"#{ins.stage}"] = ins.stage
    return names


def runs(stage: int) -> list[str]:
    return [i.args for i in INSTRUCTIONS if i.stage == stage and i.op == "RUN"]


FINAL = max(i.stage for i in INSTRUCTIONS)


def test_base_image_is_python_311_slim() -> None:
    froms = [i.args.split()[0] for i in INSTRUCTIONS if i.op == "FROM"]
    base = GLOBAL_ARGS["PYTHON_IMAGE"]
    assert base == "python:3.11-slim"
    names = stages()
    for image in froms:
        assert image == "${PYTHON_IMAGE}" or image in names, image
    assert froms[FINAL] == "${PYTHON_IMAGE}"


def test_helm_and_helmfile_come_from_the_checksum_pinned_install_script() -> None:
    stage = stages()["helm"]
    copies = [i.args for i in INSTRUCTIONS if i.stage == stage and i.op == "COPY"]
    assert "tools/install-helm.py /src/tools/install-helm.py" in copies
    assert "python3 /src/tools/install-helm.py --bin-dir /opt/helm/bin" in runs(stage)
    # the script refuses binaries whose sha256 is not the pinned one (tested in
    # test_install_helm.py); the pins it carries are the ones the Dockerfile states
    script = (ROOT / "tools" / "install-helm.py").read_text()
    for digest in re.findall(r"sha256 ([0-9a-f]{64})", DOCKERFILE.read_text()):
        assert f'"{digest}"' in script
    final_copies = [i.args for i in INSTRUCTIONS if i.stage == FINAL and i.op == "COPY"]
    assert "--from=helm /opt/helm/bin/helm /opt/helm/bin/helmfile /usr/local/bin/" in final_copies
    assert "--from=helm-diff /opt/helm/plugins /usr/local/share/helm/plugins" in final_copies


def test_helm_diff_is_downloaded_then_checked_with_sha256sum() -> None:
    stage = stages()["helm-diff"]
    args = stage_args(stage)
    assert args["HELM_DIFF_SHA256"] == ""  # no unverified default
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["HELM_DIFF_VERSION"])
    (step,) = [r for r in runs(stage) if "helm-diff" in r]
    url = "https://github.com/databus23/helm-diff/releases/download/v${HELM_DIFF_VERSION}/helm-diff-linux-amd64.tgz"
    order = [
        step.index('grep -Eqx "[0-9a-f]{64}"'.replace('"', "'")),
        step.index(url),
        step.index('echo "${HELM_DIFF_SHA256}  /tmp/helm-diff.tgz" | sha256sum -c -'),
        step.index("tar -xzf /tmp/helm-diff.tgz"),
    ]
    assert order == sorted(order), "the checksum must be checked before the tarball is unpacked"
    assert step.startswith("set -eu;")


def test_runs_as_numeric_non_root_user_with_healthcheck_and_default_command() -> None:
    final = [i for i in INSTRUCTIONS if i.stage == FINAL]
    users = [i.args for i in final if i.op == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    assert f"--uid {uid} --gid {gid}" in " ".join(r for r in runs(FINAL))
    after_user = final[[i.op for i in final].index("USER") :]
    assert all(i.op != "USER" or i.args == users[-1] for i in after_user)
    (health,) = [i.args for i in final if i.op == "HEALTHCHECK"]
    assert "CMD" in health and "http://127.0.0.1:8080/healthz" in health
    (entry,) = [json.loads(i.args) for i in final if i.op == "ENTRYPOINT"]
    (cmd,) = [json.loads(i.args) for i in final if i.op == "CMD"]
    assert entry == ["deploybot"]
    assert cmd == ["run", "-c", "/etc/deploybot/config.yaml"]
    assert [i.args for i in final if i.op == "WORKDIR"][-1] == "/var/lib/deploybot"


def test_copied_files_exist_and_are_not_dockerignored() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for ins in INSTRUCTIONS:
        if ins.op != "COPY" or ins.args.startswith("--from="):
            continue
        *sources, _dest = ins.args.split()
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
            top = src.split("/")[0]
            assert top not in ignored, f"COPY {src}: excluded by .dockerignore"


def test_every_run_script_is_valid_sh() -> None:
    for ins in INSTRUCTIONS:
        if ins.op == "RUN" and not ins.args.startswith("["):
            result = subprocess.run(["sh", "-n", "-c", ins.args], capture_output=True, text=True)
            assert result.returncode == 0, f"{ins.args}\n{result.stderr}"


def helm_diff_step(tmp_path: Path) -> str:
    """The Dockerfile's helm-diff RUN with its absolute paths moved under tmp_path."""
    (step,) = [r for r in runs(stages()["helm-diff"]) if "helm-diff" in r]
    moved = {"/opt/helm/": f"{tmp_path}/opt/helm/", "/tmp/": f"{tmp_path}/t/"}
    return re.sub("|".join(map(re.escape, moved)), lambda m: moved[m.group(0)], step)


def plugin_tarball(version: str) -> bytes:
    """Shaped like helm-diff-linux-amd64.tgz: diff/plugin.yaml and diff/bin/diff."""
    buf = io.BytesIO()
    files = {
        "diff/plugin.yaml": f'name: "diff"\nversion: "{version}"\nusage: "Preview helm upgrade changes as a diff"\ndescription: "Preview helm upgrade changes as a diff"\ncommand: "$HELM_PLUGIN_DIR/bin/diff"\n'.encode(),
        "diff/bin/diff": b"#!/bin/sh\necho diff\n",
    }
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def diff_step(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    """A sandbox for the helm-diff step: the real helm at <tmp>/opt/helm/bin, a `curl` that
    records its argv and writes a plugin tarball, and the step's script."""
    helm = require("helm")
    (tmp_path / "opt" / "helm" / "bin").mkdir(parents=True)
    (tmp_path / "opt" / "helm" / "bin" / "helm").symlink_to(helm)
    (tmp_path / "t").mkdir()
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    tarball = tmp_path / "served.tgz"
    version = stage_args(stages()["helm-diff"])["HELM_DIFF_VERSION"]
    tarball.write_bytes(plugin_tarball(version))
    curl = fakebin / "curl"
    curl.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/curl.log\n'
        'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then out="$2"; fi; shift; done\n'
        f'cp {tarball} "$out"\n'
    )
    curl.chmod(0o755)
    env = {
        "PATH": f"{fakebin}:{os.environ['PATH']}",
        "HELM_DIFF_VERSION": version,
        "HOME": str(tmp_path),
    }
    return tmp_path, env, helm_diff_step(tmp_path)


def test_helm_diff_step_refuses_a_missing_or_wrong_checksum(
    diff_step: tuple[Path, dict[str, str], str],
) -> None:
    tmp_path, env, script = diff_step
    missing = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "build arg HELM_DIFF_SHA256 must be the sha256" in missing.stderr
    assert not (tmp_path / "curl.log").exists()  # stopped before downloading

    wrong = subprocess.run(
        ["sh", "-c", script],
        env={**env, "HELM_DIFF_SHA256": "0" * 64},
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0
    assert "FAILED" in wrong.stdout + wrong.stderr
    assert not (tmp_path / "opt" / "helm" / "plugins" / "diff").exists()


def test_helm_diff_step_installs_the_plugin_when_the_checksum_matches(
    diff_step: tuple[Path, dict[str, str], str],
) -> None:
    tmp_path, env, script = diff_step
    digest = hashlib.sha256((tmp_path / "served.tgz").read_bytes()).hexdigest()
    ok = subprocess.run(
        ["sh", "-c", script],
        env={**env, "HELM_DIFF_SHA256": digest},
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    version = env["HELM_DIFF_VERSION"]
    assert re.search(rf"^diff\s+{re.escape(version)}\s", ok.stdout, re.M)
    (call,) = (tmp_path / "curl.log").read_text().splitlines()
    assert call.endswith(
        f"https://github.com/databus23/helm-diff/releases/download/v{version}/helm-diff-linux-amd64.tgz"
    )
    assert (tmp_path / "opt" / "helm" / "plugins" / "diff" / "plugin.yaml").is_file()
    assert not (tmp_path / "t" / "helm-diff.tgz").exists()


# --- systemd ----------------------------------------------------------------------------


def unit_directives(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, sep, value = line.partition("=")
        assert sep and current, f"not a directive: {raw!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_has_the_hardening_directives() -> None:
    sections = unit_directives(UNIT.read_text())
    service = dict(sections["Service"])
    assert service["ExecStart"] == "/usr/local/bin/deploybot run -c /etc/deploybot/config.yaml"
    assert service["User"] == "deploybot" or service.get("DynamicUser") == "yes"
    assert service["StateDirectory"] == "deploybot"
    assert service["EnvironmentFile"] == "/etc/deploybot/deploybot.env"
    assert service["Restart"] == "on-failure"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"
    # secrets are never inline in the unit
    for key, value in sections["Service"]:
        if key == "Environment":
            assert not re.search(r"(TOKEN|PASSWORD|SECRET)=", value), value


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip(
            "systemd-analyze not installed (apt-get install systemd); directives checked above"
        )
    # verify insists that ExecStart's binary exists: point it at a stand-in
    stub = tmp_path / "deploybot"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "deploybot.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/deploybot", str(stub)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even for unknown keys and bad values; it only says so on stderr
    about_unit = [line for line in result.stderr.splitlines() if "deploybot.service" in line]
    assert result.returncode == 0 and about_unit == [], result.stderr
