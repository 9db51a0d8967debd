"""The deploybot Helm chart, rendered and linted by the real helm (v3.17.2 from .venv/bin).

Each test renders the chart with `helm template` (or `helm lint --strict`) and checks the
parsed objects; the rendered bot config also goes through the real `deploybot check-config`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config as k8s_config

from tests.chart.helm import CHART, NAMESPACE, RELEASE, ROOT, Helm, by_kind, one, require
from tests.support.real import deploybot

FULLNAME = f"{RELEASE}-deploybot"
READ_RULES = {("apps", "deployments", verb) for verb in ("get", "list", "watch")} | {
    (group, resource, verb)
    for group, resources in (
        ("apps", ("statefulsets", "daemonsets", "replicasets")),
        ("", ("pods", "pods/log", "events", "secrets")),
    )
    for resource in resources
    for verb in ("get", "list", "watch")
}
STORE = {
    "replicaCount": 2,
    "store": {
        "url": "postgresql://deploybot@db.example.org:5432/deploybot",
        "passwordSecret": {"name": "deploybot-db", "key": "pw"},
    },
    "leaderElection": {"enabled": True},
    "persistence": {"enabled": False},
}


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", FULLNAME)


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["deploybot"]
    return containers[0]


def env_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(docs)["env"]}


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap", FULLNAME)
    return yaml.safe_load(cm["data"]["config.yaml"])


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def example_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config" / "deploybot.example.yaml").read_text())


# --- lint and schema ---------------------------------------------------------------------


def test_lint_strict_passes_with_defaults_and_every_option(helm: Helm) -> None:
    everything = {
        "config": example_config(),
        "secretEnv": [{"name": "DEPLOYBOT_GITLAB_TOKEN", "secretName": "bot", "key": "gitlab"}],
        "rbac": {"managedNamespaces": ["builds-api", "jobs-api"]},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "networkPolicy": {"enabled": True},
        **STORE,
    }
    for values in (None, everything):
        result = helm.lint(values)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "replicaCount: Invalid type. Expected: integer, given: string"),
        ({"replicacount": 2}, "Additional property replicacount is not allowed"),
        ({"persistence": {"enabled": "yes"}}, "persistence.enabled: Invalid type"),
        ({"config": {"gitlab": {"token": "glpat-inline"}}}, 'Property name of "token"'),
        (
            {"config": {"chat": {"irc": {"sasl": {"username": "bot", "password": "x"}}}}},
            'Property name of "password"',
        ),
        (
            {"secretEnv": [{"name": "DEPLOYBOT_GITLAB_TOKEN", "value": "glpat-inline"}]},
            "secretEnv.0",
        ),
        ({"leaderElection": {"enabled": True, "backend": "etcd"}}, "leaderElection.backend"),
    ],
)
def test_schema_rejects_bad_values_in_lint_and_template(
    helm: Helm, values: dict[str, Any], complaint: str
) -> None:
    lint = helm.lint(values)
    assert lint.returncode != 0
    assert complaint in lint.stdout + lint.stderr
    template = helm.template_result(values)
    assert template.returncode != 0
    assert complaint in template.stderr


def test_schema_documents_every_value() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        for key, value in values.items():
            prop = node.get("properties", {}).get(key)
            assert prop is not None, f"{path}{key} is not in values.schema.json"
            assert prop.get("description"), f"{path}{key} has no description"
            if isinstance(value, dict) and "properties" in prop:
                walk(value, prop, f"{path}{key}.")

    walk(chart_values(), schema, "")


# --- the Deployment ----------------------------------------------------------------------


def test_deployment_runs_the_bot_with_the_config_file(helm: Helm) -> None:
    docs = helm.template()
    c = container(docs)
    assert c["command"] + c["args"] == ["deploybot", "run", "-c", "/etc/deploybot/config.yaml"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert c["image"] == f"deploybot:{app_version}"
    assert deployment(docs)["spec"]["replicas"] == 1
    # the config volume holds config.yaml from the rendered ConfigMap
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/deploybot" and mounts["config"]["readOnly"]
    volumes = {v["name"]: v for v in deployment(docs)["spec"]["template"]["spec"]["volumes"]}
    sources = volumes["config"]["projected"]["sources"]
    assert sources[0]["configMap"] == {
        "name": FULLNAME,
        "items": [{"key": "config.yaml", "path": "config.yaml"}],
    }
    one(docs, "ConfigMap", FULLNAME)

    docs = helm.template({"image": {"repository": "reg.example.org/deploybot", "tag": "1.2.3"}})
    assert container(docs)["image"] == "reg.example.org/deploybot:1.2.3"


def test_probes_hit_healthz_and_ready_on_the_http_port(helm: Helm) -> None:
    for port, values in ((8080, None), (9090, {"http": {"port": 9090}})):
        c = container(helm.template(values))
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        # the bot listens where the probes and the Service look
        assert rendered_config(helm.template(values))["http"]["listen"] == f"0.0.0.0:{port}"


def test_pod_and_container_are_hardened(helm: Helm) -> None:
    docs = helm.template()
    pod = deployment(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # a writable /tmp on a read-only root filesystem
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # the image's uid matches the chart's (the Dockerfile's USER)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile


def _env_names(node: object) -> set[str]:
    """Every environment variable a config names in a `*_env` key."""
    if isinstance(node, dict):
        found = {v for k, v in node.items() if str(k).endswith("_env") and isinstance(v, str)}
        return found.union(*(_env_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_names(v) for v in node))
    return set()


def test_rendered_config_is_a_valid_bot_config_with_the_pod_layout(
    helm: Helm, tmp_path: Path
) -> None:
    example = example_config()
    example["http"] = {"listen": "127.0.0.1:9999"}  # the chart must override this
    for name, values in (("default", None), ("example", {"config": example})):
        config = rendered_config(helm.template(values))
        assert config["bot"]["state_dir"] == "/var/lib/deploybot"
        assert config["http"]["listen"] == "0.0.0.0:8080"
        assert "store" not in config and "leader_election" not in config
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        # the pod gets every secret the config names through secretEnv
        secrets = {name: "from-a-secret" for name in _env_names(config)}
        check = subprocess.run(
            [*deploybot(), "check-config", "-c", str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **secrets},
        )
        assert check.returncode == 0, check.stdout + check.stderr
    # the user's settings survive the merge
    assert config["gitlab"]["token_env"] == "DEPLOYBOT_GITLAB_TOKEN"
    assert config["components"]["builds-api"]["namespace"] == "builds-api"


def test_existing_configmap_is_used_instead_of_rendering_one(helm: Helm) -> None:
    docs = helm.template({"existingConfigMap": "my-bot-config"})
    assert [d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")] == [f"{FULLNAME}-kubeconfig"]
    volumes = deployment(docs)["spec"]["template"]["spec"]["volumes"]
    config = next(v for v in volumes if v["name"] == "config")
    assert config["projected"]["sources"][0]["configMap"]["name"] == "my-bot-config"


def test_secrets_come_only_from_existing_secrets_by_name(helm: Helm) -> None:
    values = {
        **STORE,
        "secretEnv": [
            {"name": "DEPLOYBOT_GITLAB_TOKEN", "secretName": "deploybot", "key": "gitlab-token"},
            {"name": "DEPLOYBOT_WEBHOOK_SECRET", "secretName": "hooks", "key": "secret"},
        ],
        "extraEnv": [{"name": "DEPLOYBOT_LOG_FORMAT", "value": "json"}],
        "config": example_config(),
    }
    result = helm.template_result(values)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert by_kind(docs, "Secret") == []
    env = env_of(docs)
    assert env["DEPLOYBOT_GITLAB_TOKEN"] == {
        "name": "DEPLOYBOT_GITLAB_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "deploybot", "key": "gitlab-token"}},
    }
    assert env["DEPLOYBOT_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "hooks",
        "key": "secret",
    }
    assert env["DEPLOYBOT_DB_PASSWORD"] == {
        "name": "DEPLOYBOT_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "deploybot-db", "key": "pw"}},
    }
    assert env["DEPLOYBOT_LOG_FORMAT"] == {"name": "DEPLOYBOT_LOG_FORMAT", "value": "json"}
    # no secret value anywhere: the config names variables, the kubeconfig a token file
    config = rendered_config(docs)
    assert config["store"] == {
        "url": "postgresql://deploybot@db.example.org:5432/deploybot",
        "password_env": "DEPLOYBOT_DB_PASSWORD",
    }

    def keys(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [k for k, v in node.items() for k in [k, *keys(v)]]
        if isinstance(node, list):
            return [k for item in node for k in keys(item)]
        return []

    assert not {"token", "password", "secret", "webhook_secret"} & set(keys(config))
    kubeconfig = yaml.safe_load(
        one(docs, "ConfigMap", f"{FULLNAME}-kubeconfig")["data"]["kubeconfig"]
    )
    assert set(keys(kubeconfig)).isdisjoint({"token", "client-key-data", "password"})
    assert {d["metadata"]["name"]: sorted(d["data"]) for d in by_kind(docs, "ConfigMap")} == {
        FULLNAME: ["config.yaml"],
        f"{FULLNAME}-kubeconfig": ["kubeconfig"],
    }
    for doc in docs:
        assert "stringData" not in doc
        for data in (doc.get("data") or {}).values():
            assert "glpat-" not in data and "BEGIN PRIVATE KEY" not in data


def test_in_cluster_kubeconfig_authenticates_with_the_service_account_token(
    helm: Helm, tmp_path: Path
) -> None:
    """The kubeconfig the chart mounts works with the kubernetes client the bot uses."""
    docs = helm.template()
    assert env_of(docs)["KUBECONFIG"]["value"] == "/etc/deploybot/kubeconfig"
    text = one(docs, "ConfigMap", f"{FULLNAME}-kubeconfig")["data"]["kubeconfig"]
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    (tmp_path / "token").write_text("sa-token-123")
    (tmp_path / "ca.crt").write_text("not a real CA\n")
    path = tmp_path / "kubeconfig"
    path.write_text(text.replace(sa, str(tmp_path)))
    client = k8s_config.new_client_from_config(config_file=str(path), context="in-cluster")
    assert client.configuration.host == "https://kubernetes.default.svc"
    assert "Bearer sa-token-123" in client.configuration.api_key.values()
    assert client.configuration.ssl_ca_cert == str(tmp_path / "ca.crt")

    docs = helm.template({"kubeconfig": {"inCluster": False}})
    assert "KUBECONFIG" not in env_of(docs)
    assert [d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")] == [FULLNAME]


# --- RBAC --------------------------------------------------------------------------------


def test_each_managed_namespace_gets_exactly_the_read_and_deploy_roles(helm: Helm) -> None:
    managed = ["builds-api", "jobs-api"]
    docs = helm.template({"rbac": {"managedNamespaces": managed}})
    assert by_kind(docs, "ClusterRole") == [] and by_kind(docs, "ClusterRoleBinding") == []
    roles = by_kind(docs, "Role")
    assert sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles) == sorted(
        (ns, f"{FULLNAME}-{kind}") for ns in managed for kind in ("read", "deploy")
    )
    deploy_rules = chart_values()["rbac"]["deployRules"]
    for ns in managed:
        read = next(
            r
            for r in roles
            if r["metadata"]["namespace"] == ns and r["metadata"]["name"].endswith("-read")
        )
        assert rules_of(read) == READ_RULES
        deploy = next(
            r
            for r in roles
            if r["metadata"]["namespace"] == ns and r["metadata"]["name"].endswith("-deploy")
        )
        assert deploy["rules"] == deploy_rules
        # what helm needs for `helmfile sync` of a typical component and its release record
        for needed in (
            ("apps", "deployments"),
            ("", "secrets"),
            ("", "services"),
            ("", "configmaps"),
        ):
            assert {
                (needed[0], needed[1], v) for v in ("create", "update", "patch", "delete", "get")
            } <= rules_of(deploy)
    bindings = by_kind(docs, "RoleBinding")
    assert len(bindings) == 4
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": binding["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    one(docs, "ServiceAccount", FULLNAME)


def test_deploy_rules_are_a_separate_value(helm: Helm) -> None:
    custom = [
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["certificates"],
            "verbs": ["get", "create"],
        }
    ]
    docs = helm.template({"rbac": {"managedNamespaces": ["logging"], "deployRules": custom}})
    deploy = one(docs, "Role", f"{FULLNAME}-deploy")
    assert rules_of(deploy) == {
        ("cert-manager.io", "certificates", "get"),
        ("cert-manager.io", "certificates", "create"),
    }
    assert rules_of(one(docs, "Role", f"{FULLNAME}-read")) == READ_RULES

    docs = helm.template({"rbac": {"managedNamespaces": ["logging"], "deployRules": []}})
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == [f"{FULLNAME}-read"]
    assert [b["metadata"]["name"] for b in by_kind(docs, "RoleBinding")] == [f"{FULLNAME}-read"]

    docs = helm.template({"rbac": {"create": False, "managedNamespaces": ["logging"]}})
    assert by_kind(docs, "Role") == [] and by_kind(docs, "RoleBinding") == []


def test_lease_role_only_with_kubernetes_leader_election(helm: Helm) -> None:
    assert by_kind(helm.template(), "Role") == []
    docs = helm.template({"leaderElection": {"enabled": True}})
    lease = one(docs, "Role", f"{FULLNAME}-leader-election")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert rules_of(lease) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }
    binding = one(docs, "RoleBinding", f"{FULLNAME}-leader-election")
    assert binding["subjects"][0]["name"] == FULLNAME
    assert rendered_config(docs)["leader_election"] == {
        "backend": "kubernetes",
        "lease_seconds": 15,
    }

    docs = helm.template({**STORE, "leaderElection": {"enabled": True, "backend": "postgres"}})
    assert by_kind(docs, "Role") == []
    assert rendered_config(docs)["leader_election"]["backend"] == "postgres"


# --- state volume and replicas -----------------------------------------------------------


def state_volume(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = deployment(docs)["spec"]["template"]["spec"]
    mount = next(
        m for m in container(docs)["volumeMounts"] if m["mountPath"] == "/var/lib/deploybot"
    )
    return next(v for v in pod["volumes"] if v["name"] == mount["name"])


def test_state_pvc_by_default_and_existing_claim_instead(helm: Helm) -> None:
    docs = helm.template()
    pvc = one(docs, "PersistentVolumeClaim", FULLNAME)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "storageClassName" not in pvc["spec"]
    assert state_volume(docs)["persistentVolumeClaim"] == {"claimName": FULLNAME}
    assert deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}
    assert container(docs)["workingDir"] == "/var/lib/deploybot"

    docs = helm.template({"persistence": {"existingClaim": "bot-state"}})
    assert by_kind(docs, "PersistentVolumeClaim") == []
    assert state_volume(docs)["persistentVolumeClaim"] == {"claimName": "bot-state"}

    docs = helm.template({"persistence": {"storageClass": "-"}})
    assert one(docs, "PersistentVolumeClaim")["spec"]["storageClassName"] == ""


def test_two_replicas_need_an_external_store(helm: Helm) -> None:
    result = helm.template_result({"replicaCount": 2})
    assert result.returncode != 0
    assert "replicaCount=2 needs an external PostgreSQL store: set store.url" in result.stderr
    assert "cannot be shared between replicas" in result.stderr

    no_election = {**STORE, "leaderElection": {"enabled": False}}
    result = helm.template_result(no_election)
    assert result.returncode != 0 and "needs leaderElection.enabled=true" in result.stderr

    rwo = {**STORE, "persistence": {"enabled": True}}
    result = helm.template_result(rwo)
    assert result.returncode != 0 and "no ReadWriteOnce volume shared" in result.stderr

    docs = helm.template(STORE)
    assert deployment(docs)["spec"]["replicas"] == 2
    assert deployment(docs)["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert by_kind(docs, "PersistentVolumeClaim") == []
    assert "emptyDir" in state_volume(docs)

    docs = helm.template(
        {**STORE, "persistence": {"enabled": True, "accessModes": ["ReadWriteMany"]}}
    )
    assert one(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_emptydir_state_without_a_store_is_refused(helm: Helm) -> None:
    result = helm.template_result({"persistence": {"enabled": False}})
    assert result.returncode != 0
    assert "persistence.enabled=false without store.url" in result.stderr


# --- Service, ServiceMonitor, NetworkPolicy ----------------------------------------------


def test_service_selects_the_pods_on_the_http_port(helm: Helm) -> None:
    docs = helm.template()
    svc = one(docs, "Service", FULLNAME)
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert deployment(docs)["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    # webhooks keep arriving while chat is down (/ready 503)
    assert svc["spec"]["publishNotReadyAddresses"] is True
    docs = helm.template({"service": {"publishNotReadyAddresses": False}})
    assert one(docs, "Service")["spec"]["publishNotReadyAddresses"] is False


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == pyproject["project"]["version"]


def render_notes(helm: Helm, tmp_path: Path, values: dict[str, Any] | None) -> str:
    """NOTES.txt is not rendered by `helm template` (and `helm install --dry-run` wants a
    cluster): render it through `tpl` in a copy of the chart, with the chart's helpers."""
    chart = tmp_path / "deploybot"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    args = [
        "template",
        RELEASE,
        chart,
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/notes-probe.yaml",
    ]
    result = helm.run(*args, *helm.values_args(values))
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def test_notes_render_and_say_what_is_missing(helm: Helm, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path / "a", None)
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:8080/webhooks/gitlab" in notes
    assert "No secretEnv" in notes and "rbac.managedNamespaces is empty" in notes
    notes = render_notes(
        helm,
        tmp_path / "b",
        {
            "secretEnv": [{"name": "DEPLOYBOT_GITLAB_TOKEN", "secretName": "bot", "key": "gl"}],
            "rbac": {"managedNamespaces": ["builds-api", "jobs-api"]},
            **STORE,
        },
    )
    assert "DEPLOYBOT_GITLAB_TOKEN <- secret bot, key gl" in notes
    assert "Managed namespaces (read + deploy Roles): builds-api, jobs-api" in notes
    assert "an emptyDir (the store is postgresql://" in notes


def test_servicemonitor_toggle(helm: Helm) -> None:
    assert by_kind(helm.template(), "ServiceMonitor") == []
    docs = helm.template(
        {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    )
    sm = one(docs, "ServiceMonitor", FULLNAME)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert sm["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]


def test_networkpolicy_toggle_allows_ingress_only_to_the_http_port(helm: Helm) -> None:
    assert by_kind(helm.template(), "NetworkPolicy") == []
    docs = helm.template({"networkPolicy": {"enabled": True}})
    np = one(docs, "NetworkPolicy", FULLNAME)
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert np["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    assert (
        np["spec"]["podSelector"]["matchLabels"]
        == deployment(docs)["spec"]["selector"]["matchLabels"]
    )

    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    docs = helm.template({"networkPolicy": {"enabled": True, "ingressFrom": [peer]}})
    assert one(docs, "NetworkPolicy")["spec"]["ingress"] == [
        {"ports": [{"port": 8080, "protocol": "TCP"}], "from": [peer]}
    ]


def test_config_change_rolls_the_pods(helm: Helm) -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        return deployment(helm.template(values))["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    assert checksum(None) == checksum(None)
    assert checksum(None) != checksum({"config": {"bot": {"nick": "otherbot"}}})


def test_helmfile_deploys_the_chart_gitops_style(helm: Helm, tmp_path: Path) -> None:
    """The pinned helmfile drives the pinned helm over this chart, as the bot deploys its
    components (`helmfile ... template`: no cluster needed; diff/sync would need one)."""
    helmfile = require("helmfile")
    (tmp_path / "helmfile.yaml").write_text(
        yaml.safe_dump(
            {
                "releases": [
                    {
                        "name": "deploybot",
                        "namespace": "bots",
                        "chart": str(CHART),
                        "values": [{"rbac": {"managedNamespaces": ["builds-api"]}}],
                    }
                ]
            }
        )
    )
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(helm.home / "cache"),
        "HELM_CONFIG_HOME": str(helm.home / "config"),
        "HELM_DATA_HOME": str(helm.home / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [str(helmfile), "--helm-binary", str(helm.binary), "-f", "helmfile.yaml", "template"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert one(docs, "Deployment", "deploybot")["spec"]["replicas"] == 1
    assert one(docs, "Role", "deploybot-read")["metadata"]["namespace"] == "builds-api"
