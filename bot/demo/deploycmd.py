"""The demo's deploy command: shows what a real deploy would run, touches no cluster.

`deploybot demo` configures `deploy.diff`/`apply`/`rollback` as
`python -m bot.demo.deploycmd <step> <component> <env> <version> [<live file>]`. Run by the real
deployer in its checkout of the control repo, it prints the helmfile/helm argv a real deploy
would run and the last change of the environment's pin file (the pin diff), and says plainly
that nothing was deployed. Apply and rollback record the version in the demo's simulated live
state (the environment's `live_file`), so `!status` and the monitors see the deploy. The diff step exits 2 ("changes"), as `helmfile diff
--detailed-exitcode` does, and names the release in helm-diff's header format.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REAL = {  # the default deploy.diff/apply, `{selectors}` for a component of one release
    "diff": "helmfile -e {env} --file components/{component}/helmfile.yaml diff"
    " --detailed-exitcode --suppress-secrets --context 5 --selector name={component}",
    "apply": "helmfile -e {env} --file components/{component}/helmfile.yaml apply --wait"
    " --suppress-secrets --selector name={component}",
    "rollback": "helm rollback {component} 0 -n {component} --wait",
}


def pin_diff(component: str, env: str) -> str:
    """The last commit that changed the environment's values file, as a patch."""
    values = Path("components") / component / "values"
    files = [str(p) for p in sorted(values.glob(f"{env}.yaml*"))]
    if not files:
        return f"(no values file for {env} in components/{component}/values)"
    proc = subprocess.run(
        ["git", "log", "-1", "-p", "--format=commit %h %s", "--", *files],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return proc.stdout.strip() or f"(no history for {', '.join(files)})"


def record_live(live_file: Path, component: str, version: str) -> None:
    """Set what the simulated cluster runs for `component` (a YAML map release -> version)."""
    running = yaml.safe_load(live_file.read_text()) if live_file.exists() else None
    running = running if isinstance(running, dict) else {}
    running[component] = version
    live_file.write_text(yaml.safe_dump(running))


def history_file(live_file: Path) -> Path:
    return live_file.with_name(live_file.stem + ".history.yaml")


def record_history(live_file: Path, component: str, version: str) -> None:
    """Append a revision to the simulated Helm history (one list of versions per release)."""
    path = history_file(live_file)
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    data = data if isinstance(data, dict) else {}
    data.setdefault(component, []).append(version)
    path.write_text(yaml.safe_dump(data))


def helm_previous(live_file: Path, component: str) -> str | None:
    """What `helm rollback <release> 0` returns to: the revision before the current one."""
    path = history_file(live_file)
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    revisions = data.get(component, []) if isinstance(data, dict) else []
    return str(revisions[-2]) if len(revisions) >= 2 else None


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name  # `make helm-bins` puts them in the venv
    return str(beside) if beside.is_file() else shutil.which(name)


def template(component: str, env: str, extra: list[str]) -> int:
    """`deploy.template` of the demo: the real `helmfile template` over the stand-in charts
    kept in the control repo (`chartRepository=local`), so the unapplied check works offline."""
    helmfile, helm = _tool("helmfile"), _tool("helm")
    if helmfile is None:
        print("helmfile is not installed (make helm-bins): the demo cannot render", file=sys.stderr)
        return 1
    argv = [helmfile, *(["--helm-binary", helm] if helm else []), "-e", env,
            "--file", f"components/{component}/helmfile.yaml",
            "--state-values-set", "chartRepository=local", "template", "--skip-deps", *extra]  # fmt: skip
    return subprocess.run(argv, check=False, timeout=300).returncode


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "template":
        return template(argv[1], argv[2], argv[3:])
    if len(argv) not in (4, 5) or argv[0] not in REAL or (not argv[3] and argv[0] != "rollback"):
        print(
            "usage: python -m bot.demo.deploycmd diff|apply|rollback <component> <env> <version>"
            " [<live file>]"
        )
        return 64
    step, component, env, version = argv[:4]
    if step == "rollback" and not version and len(argv) == 5:  # helm picks the revision
        picked = helm_previous(Path(argv[4]), component)
        if picked is None:
            print(f"Error: release: {component} has no previous revision")
            return 1
        print(f"helm picked the previous revision: {component} {picked}")
        version = picked
    if step != "diff" and len(argv) == 5:
        record_live(Path(argv[4]), component, version)
        record_history(Path(argv[4]), component, version)
    print(f"demo deploy step {step!r}: argv {argv}")
    print("a real deploy would run: " + REAL[step].format(component=component, env=env))
    if step == "diff":
        print(f"{component}, {component}, HelmRelease (demo) has changed:")
        print(f"  chartVersion -> {version}")
        print(pin_diff(component, env))
    print(f"demo: nothing was deployed to a cluster ({component} {version} in {env})")
    return 2 if step == "diff" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
