"""The pure parts of the unapplied check and the image digest check: rendered manifests
compared by name, helm-diff headers read, image references parsed, alert texts, config."""

from __future__ import annotations

import pytest

from bot.cluster.helm import command_argv, selector_args
from bot.cluster.runner import RunnerError
from bot.cluster.workloads import ContainerState, PodState
from bot.config.base import ConfigError
from bot.config.model import parse_config
from bot.model.manifests import RenderError, changed, diff_resources, manifests, resources_text
from bot.model.planner import Advice
from bot.model.unapplied import Unapplied, UnappliedState, component_paths
from bot.monitors.digests import mismatches, parse_image
from bot.monitors.unapplied import unapplied_text

BEFORE = """
---
# Source: builds-api/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata: {name: builds-api, namespace: builds-api}
spec: {replicas: 2}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: builds-api}
data: {token: czNjcjN0}
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: old}, data: {a: "1"}}
"""
AFTER = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: builds-api, namespace: builds-api}
spec: {replicas: 3}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: builds-api}
data: {token: bmV3LXNlY3JldA==}
---
apiVersion: v1
kind: Service
metadata: {name: builds-api, namespace: builds-api}
"""


def test_changed_names_added_removed_and_changed_resources_never_their_values() -> None:
    found = changed(manifests(BEFORE), manifests(AFTER))
    assert found == ("ConfigMap/old", "Deployment/builds-api", "Secret/token", "Service/builds-api")
    assert "czNjcjN0" not in repr(found) and "bmV3" not in repr(found)
    assert changed(manifests(BEFORE), manifests(BEFORE)) == ()
    assert resources_text(found) == (
        "4 resources: ConfigMap/old, Deployment/builds-api, Secret/token, Service/builds-api"
    )
    assert (
        resources_text(found, 2) == "4 resources: ConfigMap/old, Deployment/builds-api and 2 more"
    )


def test_a_render_that_is_not_yaml_is_one_line() -> None:
    with pytest.raises(RenderError, match="^the render is not YAML at line 2$"):
        manifests("kind: Deployment\n  - : [\n")


def test_helm_diff_headers_become_kind_and_name() -> None:
    out = (
        "Comparing release=builds-api, chart=tools/builds-api\n"
        "builds-api, builds-api, Deployment (apps) has changed:\n"
        "+ replicas: 3\n"
        "\x1b[33mbuilds-api, cfg, ConfigMap (v1) has been added:\x1b[0m\n"
    )
    assert diff_resources(out) == ("Deployment/builds-api", "ConfigMap/cfg")
    assert diff_resources("changed, but not in helm-diff's words\n") == ()


def test_alert_texts() -> None:
    r = Unapplied("builds-api", "tools", "template", "b" * 40, "a" * 40,
                  ("Deployment/builds-api",), ("1234abcd more replicas (alice)",))  # fmt: skip
    assert unapplied_text(r) == (
        "applying main would change 1 resource: Deployment/builds-api (helmfile template);"
        " 1 control-repo commit since the last apply (aaaaaaaa): 1234abcd more replicas (alice);"
        " next: !apply builds-api tools"
    )
    unread = Unapplied("builds-api", "tools", "diff", "b" * 40, None, changes_unread=True)
    assert unread.pending
    assert unapplied_text(unread) == (
        "applying main would change resources helmfile diff did not name (helmfile diff);"
        " no apply by this bot recorded there; next: !apply builds-api tools"
    )


def test_the_alert_ends_with_the_planners_next_step() -> None:
    """Found by the property test on the Kubernetes fake: toolsbeta's pin moved while local
    did not run it yet; the alert said `next: !apply builds-api toolsbeta`, which the bot
    refuses (requires). The planner's step, with the gate it names, ends the text."""
    r = Unapplied("builds-api", "toolsbeta", "diff", "b" * 40, None, ("Deployment/builds-api",))
    first = Advice("toolsbeta pins X, runs W; local first", "!apply builds-api local",
                   "requires: toolsbeta applies only what local runs")  # fmt: skip
    assert unapplied_text(r, advice=first) == (
        "applying main would change 1 resource: Deployment/builds-api (helmfile diff); no apply"
        " by this bot recorded there; next: !apply builds-api local (requires: toolsbeta"
        " applies only what local runs)"
    )
    done = Advice("nothing to apply: toolsbeta already runs X")
    assert unapplied_text(r, advice=done).endswith("no apply by this bot recorded there")


async def test_the_planner_source_answers_from_the_latest_result() -> None:
    state = UnappliedState()
    assert await state.source("builds-api", "tools") is None
    state.put(Unapplied("builds-api", "tools", "diff", "b", "a", ("Deployment/x",)))
    assert await state.source("builds-api", "tools") == ("Deployment/x",)
    state.put(Unapplied("builds-api", "tools", "diff", "b", "b"))
    assert await state.source("builds-api", "tools") is None


def _config(**extra: object) -> dict[str, object]:
    return {
        "environments": [{"name": "toolsbeta"}, {"name": "tools"}],
        "components": {"builds-api": {}, "builds": {"releases": ["builds", "builds-jobs"]}},
        **extra,
    }


def test_config_keys() -> None:
    cfg = parse_config(_config(monitors={"unapplied_every": "10m"}))
    assert cfg.monitors.unapplied_every == 600
    assert cfg.cluster.max_parallel_helm == 2
    assert selector_args(cfg, "builds-api") == ["--selector", "name=builds-api"]
    assert selector_args(cfg, "builds") == [
        "--selector", "name=builds", "--selector", "name=builds-jobs",
    ]  # fmt: skip
    # `{selectors}` is where the defaults put them: one component's apply is its releases only
    assert command_argv(cfg, cfg.deploy.apply, "builds", "tools") == [
        "helmfile", "-e", "tools", "--file", "components/builds/helmfile.yaml", "apply",
        "--wait", "--suppress-secrets", "--selector", "name=builds", "--selector", "name=builds-jobs",
    ]  # fmt: skip
    assert command_argv(cfg, cfg.deploy.diff, "builds-api", "tools")[-3:] == [
        "5", "--selector", "name=builds-api",
    ]  # fmt: skip
    assert command_argv(cfg, ["./deploy.sh", "{component}"], "builds", "tools") == [
        "./deploy.sh", "builds",
    ]  # fmt: skip
    with pytest.raises(RunnerError, match="must be a word of its own"):
        command_argv(cfg, ["--x={selectors}"], "builds", "tools")
    assert component_paths(cfg, "builds-api", "tools") == [
        "components/builds-api/",
        "components/builds-api/values/tools.yaml",
        "components/builds-api/values/tools.yaml.gotmpl",
        ":(exclude,glob)components/builds-api/**/toolsbeta.*",
    ]
    assert parse_config(_config(monitors={"unapplied_every": 90})).monitors.unapplied_every == 90


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"monitors": {"unapplied_every": "soon"}}, "monitors.unapplied_every"),
        ({"monitors": {"unapplied_every": 0}}, "monitors.unapplied_every"),
        ({"cluster": {"max_parallel_helm": 0}}, "cluster.max_parallel_helm"),
        ({"cluster": {"max_paralel_helm": 2}}, "cluster.max_paralel_helm"),
        ({"components": {"b": {"releases": ["Bad Name"]}}}, "components.b.releases"),
        ({"components": {"b": {"releases": []}}}, "components.b.releases"),
    ],
)
def test_bad_config_is_one_error_at_its_path(extra: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({**_config(), **extra})
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def _pod(image: str, image_id: str, name: str = "p1") -> PodState:
    return PodState(name, "Running", "rs", "h", (ContainerState("api", image, True, 0, image_id=image_id),))  # fmt: skip


def test_image_references_and_mismatches() -> None:
    ref = parse_image("docker-pullable://harbor.example.org/toolforge/x@sha256:abc")
    assert (ref.repository, ref.tag, ref.digest) == ("toolforge/x", None, "sha256:abc")
    ref = parse_image("localhost:5000/toolforge/x:0.0.1_b")
    assert (ref.repository, ref.tag, ref.digest) == ("toolforge/x", "0.0.1_b", None)
    assert parse_image("toolforge/x:1").repository == "toolforge/x"

    same = _pod("h.org/toolforge/x:1.0", "h.org/toolforge/x@sha256:" + "a" * 64)
    assert mismatches([same], "toolforge/x", ["1.0"], "sha256:" + "a" * 64) == []
    assert mismatches([same], "toolforge/x", ["1.0"], None) == []  # registry digest unknown
    assert mismatches([same], "toolforge/x", ["1.0"], "sha256:" + "b" * 64) == [
        "pod p1 container api runs 1.0@sha256:aaaaaaaaaaaa"
    ]
    overridden = _pod("h.org/toolforge/x:hotfix", "")
    assert mismatches([overridden], "toolforge/x", ["1.0"], None) == [
        "pod p1 container api runs tag hotfix"
    ]
    sidecar = _pod("h.org/envoy:1.0", "h.org/envoy@sha256:" + "c" * 64)
    assert mismatches([sidecar], "toolforge/x", ["1.0"], "sha256:" + "b" * 64) == []
