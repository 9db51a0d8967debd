"""Checks a deploy must pass before anything runs.

Lock, deploy window, `requires`, the Helm release's state and registry artifacts are checked
in that order; the first failure becomes a `Refusal` (one line, nothing was run). Admins'
`--force` overrides the window, `requires`, a `failed` Helm release and an unreachable
registry (never a missing artifact, a pending Helm operation or a lock), and the override is
kept as a note for the SAL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.cluster.helmrecords import PENDING
from bot.cluster.kube import ClusterError
from bot.cluster.livestate import target_of
from bot.cluster.registry import RegistryError
from bot.config.auth import same_person
from bot.control.forge import OpenBump
from bot.core.errors import GitLabError, UserError
from bot.core.text import one_line
from bot.core.windows import describe_refusal, in_window, parse_windows
from bot.deploy.freezes import FreezeBook
from bot.deploy.model import Action, Checked, DeployRequest, Refusal
from bot.model.state import Model
from bot.services import Services


async def check_lock(services: Services, component: str, env: str, actor: str) -> None:
    lock = await services.locks.get(component, env)
    if lock is not None and not same_person(services.config.people, lock.owner, actor):
        raise Refusal(f"{lock.describe()}; nothing run")


async def check_freeze(book: FreezeBook, req: DeployRequest, now: datetime, out: Checked) -> None:
    """No deploy into a frozen environment, except `--emergency` or an admin's `--force`
    with a reason (`bot.deploy.freezes.FreezeBook.freeze_gate`)."""
    emergency = req.emergency or req.action == Action.EMERGENCY
    why = await book.freeze_gate(req.env, now, req.actor, req.force, emergency, req.reason,
                                 out.forced)  # fmt: skip
    if why is not None:
        raise Refusal(why)


def check_window(services: Services, env: str, force: bool, now: datetime, out: Checked) -> None:
    env_cfg = services.config.env(env)
    windows = parse_windows(env_cfg.windows if env_cfg else [])
    if in_window(windows, now.astimezone(UTC)):
        return
    reason = f"{env} is {describe_refusal(windows, now)}"
    if not force:
        raise Refusal(f"{reason}; nothing run (an admin may add --force)")
    out.forced.append(f"{reason}, overridden with --force")


async def check_requires(
    model: Model, component: str, env: str, version: str, force: bool, out: Checked
) -> None:
    """The required environment must run `version` (live with a cluster, else deployed or
    pinned on the target branch): `bot.model.state.Model.requires_met`, the rule the
    planner names too."""
    try:
        reason = await model.requires_met(component, env, version)
    except UserError as exc:
        raise Refusal(f"{exc}; nothing run") from None
    if reason is None:
        return
    env_cfg = model.services.config.env(env)
    required = env_cfg.requires if env_cfg else None
    if not force:
        raise Refusal(f"{reason}; nothing run (deploy it to {required} first)")
    out.forced.append(f"{reason}, overridden with --force")


async def check_helm_release(
    services: Services, component: str, env: str, force: bool, out: Checked
) -> None:
    """A release whose newest Helm record is failed or pending is cleared first (a pending
    one would make helm refuse; a failed one hides what runs). An unreadable state is a note:
    the rollout check after the deploy still reads the cluster."""
    cluster = services.clusters.get(env)
    if cluster is None:
        return
    target = target_of(services.config, component)
    try:
        state = await cluster.release_state(target.namespace, target.release)
    except ClusterError as exc:
        out.notes.append(f"helm release state not checked ({exc})")
        return
    if state is None or not state.in_trouble:
        return
    reason = f"{state.describe()}"
    next_step = state.next_step(component, env)
    if force and state.status not in PENDING:
        out.forced.append(f"{reason}, deployed over it with --force")
        return
    hint = "" if state.status in PENDING else " or an admin's --force"
    raise Refusal(f"{reason}; nothing run (next: {next_step}{hint})")


async def check_registry(
    services: Services, component: str, version: str, force: bool, out: Checked,
    *, emergency: bool = False,
) -> None:  # fmt: skip
    """Image and chart must exist; missing -> Refusal naming them. An emergency rollback
    does not wait for an unreachable registry (it depends on the cluster alone)."""
    registry = services.registry
    if registry is None:
        out.notes.append("no registry to check artifacts")
        return
    comp = services.config.components[component]
    if comp.helm_repo:
        out.notes.append(f"upstream chart: artifacts are {comp.helm_repo}'s, not checked")
        return
    wanted = [(kind, repo) for kind, repo in (("image", comp.image), ("chart", comp.chart)) if repo]
    if not wanted:
        out.notes.append(f"artifacts not checked: no image or chart configured for {component}")
        return
    missing = []
    try:
        for kind, repo in wanted:
            if not await registry.manifest_exists(repo, version):
                missing.append(f"{kind} {registry.repository_path(repo)}:{version}")
    except RegistryError as exc:
        if emergency:
            # the reason, not the artifact the start line names anyway: it must fit one line
            why = one_line(str(exc).rsplit(": ", 1)[-1].split(" (", 1)[0], 50)
            out.notes.append(f"artifacts not checked ({why}); an emergency does not wait")
            return
        if not force:
            raise Refusal(f"cannot check artifacts: {exc}; nothing run") from None
        out.forced.append(f"artifacts not checked ({exc}), overridden with --force")
        return
    if missing:
        raise Refusal(f"{' and '.join(missing)} missing from the registry; nothing run")
    out.notes.append("artifacts present")


async def check_approval(
    services: Services, env: str, mr: OpenBump | None, actor: str | None = None
) -> None:
    """With `require_mr_approval`, an open bump MR must be approved in GitLab first, by a
    person other than the one who applies it (`people:` says who is who)."""
    env_cfg = services.config.env(env)
    control = services.config.control_repo
    if mr is None or env_cfg is None or not env_cfg.require_mr_approval:
        return
    if services.gitlab is None or control is None or not control.project:
        raise Refusal(
            f"{env} requires an approved bump MR but GitLab is not configured; nothing run"
        )
    try:
        state = await services.gitlab.mr_approvals(control.project, mr.iid)
    except GitLabError as exc:
        raise Refusal(f"cannot read the approvals of MR !{mr.iid}: {exc}; nothing run") from None
    if state is None or not state.get("approved"):
        left = (state or {}).get("approvals_left")
        need = f" ({left} more needed)" if left else ""
        raise Refusal(
            f"bump MR !{mr.iid} is not approved yet{need}; nothing run; approve it in GitLab"
            f" ({mr.url}), then !apply again"
        )
    people = services.config.people
    by = [str((a.get("user") or {}).get("username") or "") for a in state.get("approved_by") or []]
    if actor and by and all(same_person(people, f"gitlab:{u}", actor) for u in by):
        raise Refusal(
            f"bump MR !{mr.iid} is approved only by gitlab:{by[0]}, the person applying it;"
            f" another person must approve it ({mr.url}); nothing run"
        )
