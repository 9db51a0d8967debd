"""The steps of one deploy: check out the control repo, run diff/apply/rollback/test argv,
watch the rollout, verify the live version.

Each step either returns what to tell the user or raises `DeployFailed` with the one-line
reason. Commands get the environment's kubeconfig and context (`KUBECONFIG`,
`HELM_KUBECONTEXT`), the deploy's identity (`DEPLOYBOT_*`), and the bot's environment minus
every variable that holds a configured secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from pathlib import Path

from bot.cluster.helm import OnWait, cluster_key, cluster_name, command_argv, releases_of
from bot.cluster.kube import ClusterError
from bot.cluster.livestate import target_of
from bot.cluster.rollout import Releases
from bot.cluster.runner import RunnerError, RunResult, changed_resources, diff_outcome, run
from bot.core.git import GitError, git
from bot.deploy.failures import meaningful_line
from bot.deploy.model import Action, Deploy, DeployFailed
from bot.deploy.orphans import pgid_path
from bot.model.running import live_version
from bot.services import Services

HELM_STEPS = ("diff", "apply", "rollback")  # they talk to the cluster: one slot each
QUOTE = 120  # characters of a failed step's error line quoted in its deploy line
# the Kubernetes API server's scheme and host in an error line (the environment names it)
_API_HOST = re.compile(r"https?://[^/\s\"']+(?=/apis?/)")


class Steps:
    def __init__(self, services: Services, logs: Path) -> None:
        self.services = services
        self.config = services.config
        self.logs = logs

    async def checkout(self, d: Deploy, workdir: Path) -> None:
        """A private clone (sharing objects with the bot's checkout) at exactly d.commit."""
        control = self.services.control
        if control is None or d.commit is None:
            raise DeployFailed("no control repo checkout to deploy from")
        await asyncio.to_thread(shutil.rmtree, workdir, True)
        try:
            await git("clone", "--quiet", "--shared", "--no-checkout", "--",
                      str(control.workdir), str(workdir))  # fmt: skip
            await git("checkout", "--quiet", "--detach", d.commit, cwd=workdir)
        except GitError as exc:
            raise DeployFailed(f"cannot check out {d.commit[:8]}: {exc}") from None

    async def run(
        self, d: Deploy, step: str, template: list[str], cwd: Path, *, check: bool = True,
        on_wait: OnWait | None = None,
    ) -> RunResult:  # fmt: skip
        """Run one configured argv; DeployFailed unless it exits 0 (diff: 0 or 2), or, with
        `check=False`, whatever its exit status (a timeout still fails). It waits for one of
        the cluster's `cluster.max_parallel_helm` slots first (`on_wait` hears why)."""
        req = d.req
        env_cfg = self.config.env(req.env)
        try:
            argv = command_argv(self.config, template, req.component, req.env,
                                version=d.version, revision=str(d.revision or 0))  # fmt: skip
        except RunnerError as exc:
            raise DeployFailed(f"deploy.{step}: {exc}") from None
        redact = self.services.redactor
        child = {k: v for k, v in os.environ.items() if redact(v) == v}
        if env_cfg and env_cfg.kubeconfig:
            child["KUBECONFIG"] = str(Path(env_cfg.kubeconfig).expanduser())
        if env_cfg and env_cfg.kube_context:
            child["HELM_KUBECONTEXT"] = env_cfg.kube_context
        child.update(DEPLOYBOT_DEPLOY_ID=str(d.id), DEPLOYBOT_COMPONENT=req.component,
                     DEPLOYBOT_ENV=req.env, DEPLOYBOT_VERSION=d.version)  # fmt: skip
        slot = self.services.helm_slots.slot(
            cluster_key(self.config, req.env), self.config.cluster.max_parallel_helm,
            f"deploy #{d.id} {step}", name=cluster_name(self.config, req.env), on_wait=on_wait,
        ) if step in HELM_STEPS else contextlib.nullcontext()  # fmt: skip
        async with slot:
            result = await run(argv, cwd=cwd, env=child, timeout=self.config.deploy.timeout,
                               log_path=self.logs / f"{d.id}.log",
                               pgid_path=pgid_path(self.logs, d.id),
                               redact=redact.outside)  # fmt: skip
        ok = (0, 2) if step == "diff" else (0,)
        if result.timed_out:
            raise DeployFailed(f"{step} killed after {result.duration:.0f}s (deploy.timeout)")
        if check and result.returncode not in ok:
            last = _API_HOST.sub("", redact(meaningful_line(result.tail)))
            if len(last) > QUOTE:  # helm says the cause last ("...: EOF"): keep the end
                last = "…" + last[-(QUOTE - 1) :]
            raise DeployFailed(f"{step} exited {result.returncode}" + (f": {last}" if last else ""))
        return result

    @staticmethod
    def diff_summary(result: RunResult, link: str | None = None) -> str:
        """`3 resources changed: ns/Deployment/x, ...` or `no changes`; when the exit code
        says changed but no resource could be read from the output, never "0 resources":
        `changes (see the diff: <link>)`."""
        if diff_outcome(result.returncode) != "changes":
            return "no changes"
        changed = changed_resources(result.output)
        if not changed:
            return f"changes (see the diff: {link})" if link else "changes (see the deploy log)"
        n = len(changed)
        text = f"{n} resource{'s' if n != 1 else ''} changed"
        if changed:
            text += ": " + ", ".join(changed[:4]) + (f" and {n - 4} more" if n > 4 else "")
        return text

    async def verify(self, d: Deploy) -> str:
        """Watch the rollout, then check the live chart version (an emergency rollback
        takes whatever is live as its version)."""
        cluster = self.services.clusters.get(d.req.env)
        if cluster is None:
            return "not verified (no cluster)"
        c = d.req.component
        namespace = target_of(self.config, c).namespace
        releases = Releases(frozenset(releases_of(self.config, c)),
                            self.config.components[c].instance_label)  # fmt: skip
        rollout = await cluster.wait_rollout(
            namespace, timeout=self.config.deploy.rollout_timeout, releases=releases
        )
        if not rollout.ok:
            raise DeployFailed(f"rollout failed: {rollout.summary}")
        try:
            live = await live_version(self.services, d.req.component, d.req.env)
        except ClusterError as exc:
            raise DeployFailed(f"rolled out but the live version is unknown: {exc}") from None
        if d.req.action == Action.EMERGENCY and live and not live.startswith("mixed"):
            d.version = live
            return f"live version {live} verified"
        if live != d.version:
            raise DeployFailed(f"live version {live or 'unknown'} is not the pinned {d.version}")
        return "live version verified"
