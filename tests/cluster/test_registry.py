"""Registry: OCI manifest checks against a real registry (Debian's `docker-registry`); the
bearer token flow, injected faults and Harbor's label API against FakeRegistry."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.cluster.registry import Registry, RegistryError, harbor_path
from tests.support.fakes.registry import FakeRegistry
from tests.support.oci_registry import OciRegistry

IMAGE = "toolforge/builds-api"
CHART = "toolforge/charts/builds-api"
V1 = "0.0.131-20240101120000-1a2b3c4d"
V2 = "0.0.132-20240102120000-5e6f7a8b"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    async with FakeRegistry() as registry:
        yield registry


@pytest.fixture
async def secured() -> AsyncIterator[FakeRegistry]:
    async with FakeRegistry(auth="bearer", users={"robot$deploybot": "hunter2-secret"}) as reg:
        yield reg


def client(
    url: str,
    kind: Literal["oci", "harbor"] = "oci",
    username: str | None = None,
    password: str | None = None,
) -> Registry:
    return Registry(url, kind, username, password, attempts=3, backoff=0.01, timeout=5)


async def test_manifest_exists_and_missing(oci_registry: OciRegistry) -> None:
    oci_registry.push_manifest(IMAGE, V1)
    async with client(oci_registry.url) as reg:
        assert await reg.manifest_exists(IMAGE, V1) is True
        assert await reg.manifest_exists(IMAGE, V2) is False
        assert await reg.manifest_exists("toolforge/other", V1) is False
        # the full reference as the config or an announcement writes it also works
        assert await reg.manifest_exists(f"oci://{oci_registry.address}/{IMAGE}", V1)


async def test_plus_in_a_version_is_looked_up_as_underscore_like_helm_pushes_it(
    oci_registry: OciRegistry,
) -> None:
    oci_registry.push_chart(CHART, "0.0.131+dev")  # tagged 0.0.131_dev, as `helm push` does
    async with client(oci_registry.url) as reg:
        assert await reg.manifest_exists(CHART, "0.0.131+dev")


async def test_bearer_token_flow_gets_and_reuses_a_token(secured: FakeRegistry) -> None:
    secured.push(IMAGE, V1)
    async with client(secured.url, username="robot$deploybot", password="hunter2-secret") as reg:
        assert await reg.manifest_exists(IMAGE, V1)
        assert not await reg.manifest_exists(IMAGE, V2)

    token_requests = [r for r in secured.requests if r.path.startswith("/service/token")]
    assert len(token_requests) == 1
    query = parse_qs(urlsplit(token_requests[0].path).query)
    assert query == {
        "service": ["harbor-registry"],
        "scope": ["repository:toolforge/builds-api:pull"],
    }
    assert token_requests[0].authorization.startswith("Basic ")
    heads = [r for r in secured.requests if r.method == "HEAD"]
    assert [h.authorization.startswith("Bearer ") for h in heads] == [False, True, True]


async def test_basic_auth_registry_gets_credentials_after_the_challenge() -> None:
    async with FakeRegistry(auth="basic", users={"bot": "pw-basic-1"}) as fake:
        fake.push(IMAGE, V1)
        async with client(fake.url, username="bot", password="pw-basic-1") as reg:
            assert await reg.manifest_exists(IMAGE, V1)
        async with client(fake.url) as anonymous:
            with pytest.raises(RegistryError, match="HTTP 401"):
                await anonymous.manifest_exists(IMAGE, V1)


async def test_wrong_password_is_an_error_without_the_password(secured: FakeRegistry) -> None:
    secured.push(IMAGE, V1)
    async with client(secured.url, username="robot$deploybot", password="wrong-pw-123") as reg:
        with pytest.raises(RegistryError) as err:
            await reg.manifest_exists(IMAGE, V1)
    message = str(err.value)
    assert "401" in message and "\n" not in message
    assert "wrong-pw-123" not in message


async def test_artifacts_exist_lists_exactly_what_retention_pruned(
    oci_registry: OciRegistry,
) -> None:
    for version in (V1, V2):
        oci_registry.push_manifest(IMAGE, version)
        oci_registry.push_chart(CHART, version)
    async with client(oci_registry.url) as reg:
        assert await reg.artifacts_exist(IMAGE, CHART, V1) == []
        oci_registry.delete_tag(CHART, V1)
        assert await reg.artifacts_exist(IMAGE, CHART, V1) == [f"chart {CHART}:{V1}"]
        oci_registry.delete_tag(IMAGE, V1)
        assert await reg.artifacts_exist(IMAGE, CHART, V1) == [
            f"image {IMAGE}:{V1}",
            f"chart {CHART}:{V1}",
        ]
        assert await reg.artifacts_exist(IMAGE, CHART, V2) == []


async def test_server_errors_are_retried(fake: FakeRegistry) -> None:
    fake.push(IMAGE, V1)
    async with client(fake.url) as reg:
        fake.fail_next = 2
        assert await reg.manifest_exists(IMAGE, V1)
        fake.fail_next = 3
        with pytest.raises(RegistryError, match="HTTP 503"):
            await reg.manifest_exists(IMAGE, V1)


async def test_unreachable_registry_error_has_no_credentials() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with client(url, username="robot$deploybot", password="hunter2-secret") as reg:
        with pytest.raises(RegistryError) as err:
            await reg.artifacts_exist(IMAGE, CHART, V1)
    message = str(err.value)
    assert "failed 3 times" in message and "127.0.0.1" in message
    assert "hunter2" not in message and "\n" not in message


def test_harbor_path_splits_project_and_repository() -> None:
    assert harbor_path("toolforge/builds-api") == ("toolforge", "builds-api")
    assert harbor_path("toolforge/charts/builds-api") == ("toolforge", "charts/builds-api")
    with pytest.raises(RegistryError):
        harbor_path("builds-api")


async def test_harbor_labels_add_list_and_remove(fake: FakeRegistry) -> None:
    for version in (V1, V2):
        fake.push(CHART, version)
    project, repository = harbor_path(CHART)
    async with client(fake.url, "harbor") as reg:
        await reg.add_label(project, repository, V1, "deployed")
        await reg.add_label(project, repository, V1, "deployed")  # idempotent
        await reg.add_label(project, repository, V2, "deployed")

        assert await reg.artifact_labels(project, repository, V1) == {"deployed"}
        assert await reg.labelled_artifacts(project, repository, "deployed") == {V1, V2}

        await reg.remove_label(project, repository, V2, "deployed")
        await reg.remove_label(project, repository, V2, "deployed")  # idempotent

        assert await reg.labelled_artifacts(project, repository, "deployed") == {V1}
        assert await reg.artifact_labels(project, repository, V2) == set()
    # as the server sees it: one global label, attached to V1 only
    assert [lb["name"] for lb in fake.labels.values()] == ["deployed"]
    assert fake.label_names(CHART, V1) == {"deployed"} and fake.label_names(CHART, V2) == set()
    label_posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/labels")]
    assert f"/repositories/charts%252Fbuilds-api/artifacts/{V1}/labels" in label_posts[1].path


async def test_harbor_label_id_finds_the_exact_existing_label(fake: FakeRegistry) -> None:
    fake.labels[7] = {"id": 7, "name": "deployed-old", "scope": "g"}
    fake.labels[9] = {"id": 9, "name": "deployed", "scope": "g"}
    async with client(fake.url, "harbor") as reg:
        assert await reg.label_id("deployed") == 9
    assert not any(r.method == "POST" for r in fake.requests)


async def test_harbor_api_uses_basic_auth_and_hides_it_in_errors() -> None:
    users = {"robot$deploybot": "hunter2-secret"}
    async with FakeRegistry(users=users) as fake:
        fake.push(IMAGE, V1)
        async with client(
            fake.url, "harbor", username="robot$deploybot", password="hunter2-secret"
        ) as reg:
            await reg.add_label("toolforge", "builds-api", V1, "deployed")
        assert fake.label_names(IMAGE, V1) == {"deployed"}
        async with client(
            fake.url, "harbor", username="robot$deploybot", password="bad-pass-42"
        ) as reg:
            with pytest.raises(RegistryError) as err:
                await reg.artifact_labels("toolforge", "builds-api", V1)
        assert "401" in str(err.value) and "bad-pass-42" not in str(err.value)


async def test_manifest_size_sums_config_and_layers_and_delete_goes_by_digest(
    oci_registry: OciRegistry,
) -> None:
    from tests.support.oci_registry import get_manifest, list_tags

    digest = oci_registry.push_manifest(IMAGE, V1)
    manifest = get_manifest(oci_registry.url, IMAGE, V1)
    assert manifest is not None
    expected = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    async with client(oci_registry.url) as reg:
        assert await reg.manifest_size(IMAGE, V1) == (digest, expected)
        assert await reg.manifest_size(IMAGE, V2) is None
        with pytest.raises(RegistryError, match="not a manifest digest"):
            await reg.delete_manifest(IMAGE, V1)  # a tag is not a digest
        assert await reg.delete_manifest(IMAGE, digest) is True
        assert await reg.delete_manifest(IMAGE, digest) is False  # already gone
    assert list_tags(oci_registry.url, IMAGE) == []
