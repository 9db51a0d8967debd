"""`!prune apply` against a REAL OCI registry (Debian's `docker-registry`, deletes enabled):
it deletes exactly the planned tags that are still safe, keeps one pinned between plan and
apply, refuses a digest a kept tag shares, and writes one SAL entry per deleted tag."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bot.core.git import git
from bot.store.db import Store
from tests.support.monitorworld import CHARTS, world
from tests.support.oci_registry import OciRegistry, add_tag, list_tags
from tests.support.session import console_session
from tests.support.shown import shown

IMAGE = "toolforge/builds-api"
CHART = f"{CHARTS}/builds-api"
OLD = [f"0.0.{n}-202501{n - 59:02d}120000-{n:08x}" for n in range(60, 66)]  # 6, a year old


def replies(out: list[str]) -> list[str]:
    return [x for x in out if not x.startswith("[#") and not x.endswith("working on it…")]


async def pin(control: Path, work: Path, env: str, version: str) -> None:
    """Someone pins `version` in env on the control repo's main (a plain git push)."""
    await git("clone", "--quiet", str(control), str(work))
    path = work / "components/builds-api/values" / f"{env}.yaml"
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(f"chartVersion: {version}" if x.startswith("chartVersion:") else x for x in lines)
        + "\n"
    )
    await git("-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-qam",
              f"builds-api: pin {version} in {env}", cwd=work)  # fmt: skip
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)


async def test_prune_apply_deletes_the_planned_tags_keeps_one_pinned_since_and_logs_each(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    def real(data: dict[str, Any]) -> None:
        data["registry"] = {"url": oci_registry.url, "kind": "oci"}
        data["monitors"].update(enabled=False, undeployed_after=10 * 365 * 86400)
        # a grace that always spares the world's releases (built 2026-11-07) and never OLD
        # (2025-01): a fixed "30d" made this test fail from 2026-12-07 on, as they aged
        spare = (datetime.now(UTC).date() - date(2026, 10, 8)).days
        data["prune"] = {"enabled": True, "keep": 3, "grace": f"{spare}d"}

    async with world(tmp_path, real) as w:
        for version in OLD + w.releases["builds-api"]:
            oci_registry.push_manifest(IMAGE, version)
            oci_registry.push_chart(CHART, version)
        # a tag outside the release scheme shares the manifest of the oldest release's image
        add_tag(oci_registry.url, IMAGE, OLD[0], "stable")

        out = replies(await console_session(w.config, ["!prune apply builds-api",
                                                       "!prune plan builds-api"]))  # fmt: skip
        assert (
            out[0]
            == "prune: no plan for builds-api: run !prune plan builds-api first; nothing deleted"
        )
        plan = out[1]
        assert plan.startswith(
            f"prune plan for builds-api (read-only, nothing deleted): {len(OLD)} of"
        ), plan
        assert "KiB in all), oldest first: " in plan and f"{shown(OLD[0])} (" in plan
        assert list_tags(oci_registry.url, IMAGE) == sorted(
            OLD + w.releases["builds-api"] + ["stable"]
        )  # the plan deleted nothing

        control = Path(w.config.control_repo.url.removeprefix("file://"))  # type: ignore[union-attr]
        await pin(control, tmp_path / "pin", "toolsbeta", OLD[3])  # pinned since the plan

        out = replies(await console_session(w.config, ["!prune apply builds-api"]))
        reply = out[0]
        assert reply.startswith(f"pruned 4 of {len(OLD)} planned artifact versions of builds-api"
                                " (8 tags, "), reply  # fmt: skip
        assert f"{shown(OLD[3])}: now pinned in toolsbeta" in reply
        assert f"{shown(OLD[0])}: {IMAGE}:{OLD[0]} shares its digest with kept stable" in reply

        kept = {OLD[0], OLD[3]}
        gone = [v for v in OLD if v not in kept]
        left = set(list_tags(oci_registry.url, IMAGE))
        assert left == kept | set(w.releases["builds-api"]) | {"stable"}
        assert set(list_tags(oci_registry.url, CHART)) == kept | set(w.releases["builds-api"])

        store = Store(w.config.store_url)
        await store.open()
        try:
            rows = await store.fetchall("SELECT * FROM sal WHERE action='prune' ORDER BY id")
        finally:
            await store.close()
        logged = sorted((r["from_version"], r["message"].split(" pruned ")[1].split(" ")[0])
                        for r in rows)  # fmt: skip
        assert logged == sorted(
            [(v, f"{IMAGE}:{v}") for v in gone] + [(v, f"{CHART}:{v}") for v in gone]
        )
        assert all(r["actor"] == "console:tester" and r["result"] == "deleted" for r in rows)

        # the plan was used up: a second apply deletes nothing
        out = replies(await console_session(w.config, ["!prune apply builds-api"]))
        assert out[0].startswith("prune: no plan for builds-api")


async def test_prune_apply_is_off_unless_enabled_and_needs_an_admin(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    def real(data: dict[str, Any]) -> None:
        data["registry"] = {"url": oci_registry.url, "kind": "oci"}
        data["monitors"].update(enabled=False)
        data["auth"] = {"rules": [{"who": ["console:tester"], "role": "admin"},
                                  {"who": ["console:dep"], "role": "deployer"}]}  # fmt: skip

    async with world(tmp_path, real) as w:
        for version in OLD:
            oci_registry.push_manifest(IMAGE, version)
        out = replies(await console_session(w.config, ["!prune plan builds-api",
                                                       "!prune apply builds-api"]))  # fmt: skip
        assert out[1] == (
            "prune: prune apply is off: set prune.enabled: true in the config to let the bot"
            " delete registry artifacts; nothing deleted"
        )
        out = replies(await console_session(w.config, ["!prune apply builds-api"], user="dep"))
        assert out == [
            "prune: refused: you need the admin role for builds-api in toolsbeta; see !whoami"
        ]
        assert list_tags(oci_registry.url, IMAGE) == sorted(OLD)
