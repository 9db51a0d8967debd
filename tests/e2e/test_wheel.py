"""The built wheel carries the demo: installed anywhere, `deploybot demo` runs from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.real import real
from tests.support.session import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_wheel_runs_the_demo_from_an_unrelated_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(ROOT)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = wheels.glob("deploybot-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_installed_demo(site, tmp_path / "demo", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(site)), "the demo ran from the source tree, not the wheel"
    assert any(line.startswith("builds-api toolsbeta: live") for line in lines), lines
    assert "nothing is deployed to a cluster" in lines[1], lines
    assert (tmp_path / "demo" / "deploybot.yaml").exists()


@real  # a `deploybot` process: `make test` runs this, `make check` does not
def run_installed_demo(site: Path, demo: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`deploybot demo` from the installed wheel (`site` on PYTHONPATH), two lines typed."""
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-c", "import bot, sys; from bot.cli import main; print(bot.__file__);"
         " sys.exit(main())", "demo", "--dir", str(demo),
         "--listen", f"127.0.0.1:{free_port()}"],
        input="!status builds-api\n!deploy builds-api latest to toolsbeta\n",
        capture_output=True, text=True, cwd=cwd, env=env, timeout=180,
    )  # fmt: skip
