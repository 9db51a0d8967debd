"""A real OCI registry (Debian `docker-registry`, CNCF distribution 2.8) on loopback for tests.

    with running_registry(tmp_path) as reg:
        digest = push_manifest(reg.url, "toolforge/builds-api", "0.0.131")
        push_chart(reg.url, "toolforge/charts/builds-api", "0.0.131")
        manifest_digest(reg.url, "toolforge/builds-api", "0.0.131")  # == digest
        delete_tag(reg.url, "toolforge/builds-api", "0.0.131")         # a retention rule

Pushes speak the distribution API directly (no docker, no helm): blobs by
`POST /v2/<name>/blobs/uploads/` + `PUT <location>&digest=...`, then the manifest by tag.
Every pushed image/chart has content unique to its name and tag, so each tag has its own
manifest digest and deleting one tag's manifest never removes another tag.

The registry only shows OCI manifests to clients that accept them: a `HEAD`/`GET` of a
manifest without `application/vnd.oci.image.manifest.v1+json` in `Accept` answers 404
MANIFEST_UNKNOWN, as on any distribution 2.x registry.

The helpers use only the standard library (blocking urllib); from async code they can run
in `asyncio.to_thread` (the registry is its own process, so blocking briefly is also safe).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import signal
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.procs import HOST, free_port, log_tail, missing, stop_process, wait_until
from tests.support.real import real

INSTALL = "apt-get install -y --no-install-recommends docker-registry"
START_TIMEOUT = 20.0
HTTP_TIMEOUT = 10.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
# what a client that wants any image or chart manifest sends
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {host}:{port}
  secret: deploybot-test-not-a-secret
health:
  storagedriver:
    enabled: false
"""


class RegistryError(Exception):
    """The registry answered a push/delete with an unexpected status."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> Response:
    """One HTTP request; 4xx/5xx are returned, not raised. No proxies (loopback only)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, dict(e.headers.items()), e.read())


def _expect(resp: Response, *codes: int, what: str) -> Response:
    if resp.status not in codes:
        raise RegistryError(f"{what}: HTTP {resp.status} {resp.body[:500]!r}")
    return resp


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _targz(files: Mapping[str, bytes]) -> tuple[bytes, bytes]:
    """(gzip-compressed tar, uncompressed tar) of `files`, byte-for-byte reproducible."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), plain


# --- the distribution API ------------------------------------------------------------------


def blob_exists(base_url: str, name: str, digest: str) -> bool:
    resp = _request("HEAD", f"{base_url}/v2/{name}/blobs/{digest}")
    return resp.status == 200


def push_blob(base_url: str, name: str, data: bytes) -> str:
    """Upload `data` as a blob of repository `name` (POST an upload, PUT it with its digest);
    returns `sha256:<hex>`. A blob that is already there is not uploaded again."""
    digest = _digest(data)
    if blob_exists(base_url, name, digest):
        return digest
    started = _expect(
        _request("POST", f"{base_url}/v2/{name}/blobs/uploads/", body=b""),
        202,
        what=f"start blob upload to {name}",
    )
    location = urllib.parse.urljoin(base_url + "/", started.headers["Location"])
    separator = "&" if "?" in location else "?"
    _expect(
        _request(
            "PUT",
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        ),
        201,
        what=f"finish blob upload {digest} to {name}",
    )
    return digest


def put_manifest(base_url: str, name: str, reference: str, manifest: Mapping[str, Any]) -> str:
    """PUT `manifest` (its own `mediaType`) under tag or digest `reference`; returns its digest."""
    body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    resp = _expect(
        _request(
            "PUT",
            f"{base_url}/v2/{name}/manifests/{reference}",
            body=body,
            headers={"Content-Type": str(manifest.get("mediaType", OCI_MANIFEST))},
        ),
        201,
        what=f"push manifest {name}:{reference}",
    )
    return resp.headers.get("Docker-Content-Digest") or _digest(body)


def push_artifact(
    base_url: str,
    name: str,
    tag: str,
    *,
    config: bytes,
    config_media_type: str,
    layers: list[tuple[bytes, str]],
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Push config and layer blobs (data, mediaType) and an OCI image manifest tagged `tag`;
    returns the manifest digest."""
    descriptors = []
    for data, media_type in layers:
        descriptors.append(
            {"mediaType": media_type, "digest": push_blob(base_url, name, data), "size": len(data)}
        )
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": config_media_type,
            "digest": push_blob(base_url, name, config),
            "size": len(config),
        },
        "layers": descriptors,
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return put_manifest(base_url, name, tag, manifest)


def push_manifest(base_url: str, name: str, tag: str) -> str:
    """Push a minimal OCI container image `name:tag` (one tiny layer, a config naming it);
    returns the manifest digest."""
    layer, plain = _targz({"etc/deploybot-test": f"{name}:{tag}\n".encode()})
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.ref.name": f"{name}:{tag}"}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(plain)]},
    }
    return push_artifact(
        base_url,
        name,
        tag,
        config=json.dumps(config, sort_keys=True).encode(),
        config_media_type=OCI_CONFIG,
        layers=[(layer, OCI_LAYER)],
    )


def chart_tag(version: str) -> str:
    """The tag `helm push` uses for a chart version (OCI tags cannot hold `+`)."""
    return version.replace("+", "_")


def push_chart(base_url: str, name: str, version: str, *, chart: str | None = None) -> str:
    """Push a Helm chart `name:version` laid out as `helm push` does (config mediaType
    `application/vnd.cncf.helm.config.v1+json`, one chart tarball layer holding
    `<chart>/Chart.yaml`); `chart` defaults to the last path segment of `name`.
    Returns the manifest digest."""
    chart = chart or name.rsplit("/", 1)[-1]
    meta = {"apiVersion": "v2", "name": chart, "version": version, "type": "application"}
    chart_yaml = "".join(f"{k}: {v}\n" for k, v in meta.items()).encode()
    layer, _ = _targz(
        {f"{chart}/Chart.yaml": chart_yaml, f"{chart}/values.yaml": b"{}\n"},
    )
    return push_artifact(
        base_url,
        name,
        chart_tag(version),
        config=json.dumps(meta, sort_keys=True).encode(),
        config_media_type=HELM_CONFIG,
        layers=[(layer, HELM_CHART)],
        annotations={
            "org.opencontainers.image.title": chart,
            "org.opencontainers.image.version": version,
        },
    )


def head_manifest(
    base_url: str, name: str, reference: str, *, accept: str = MANIFEST_ACCEPT
) -> Response:
    """`HEAD /v2/<name>/manifests/<reference>` with `accept` (every manifest type by default)."""
    return _request(
        "HEAD", f"{base_url}/v2/{name}/manifests/{reference}", headers={"Accept": accept}
    )


def manifest_digest(base_url: str, name: str, reference: str) -> str | None:
    """The digest of tag/digest `reference`, or None if the registry does not have it."""
    resp = head_manifest(base_url, name, reference)
    if resp.status == 404:
        return None
    _expect(resp, 200, what=f"HEAD manifest {name}:{reference}")
    return resp.headers["Docker-Content-Digest"]


def get_manifest(base_url: str, name: str, reference: str) -> dict[str, Any] | None:
    resp = _request(
        "GET",
        f"{base_url}/v2/{name}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    if resp.status == 404:
        return None
    manifest: dict[str, Any] = json.loads(_expect(resp, 200, what="GET manifest").body)
    return manifest


def add_tag(base_url: str, name: str, reference: str, tag: str) -> str:
    """Point `tag` at the manifest `reference` already has (as `docker tag` + push would)."""
    manifest = get_manifest(base_url, name, reference)
    if manifest is None:
        raise RegistryError(f"{name}:{reference} does not exist")
    return put_manifest(base_url, name, tag, manifest)


def delete_tag(base_url: str, name: str, tag: str) -> str:
    """What a retention rule does: look up the tag's digest and delete that manifest (the
    tag goes with it, and so would every other tag of the same digest). Returns the digest."""
    digest = manifest_digest(base_url, name, tag)
    if digest is None:
        raise RegistryError(f"{name}:{tag} does not exist")
    _expect(
        _request("DELETE", f"{base_url}/v2/{name}/manifests/{digest}"),
        202,
        what=f"delete manifest {name}@{digest}",
    )
    return digest


def list_tags(base_url: str, name: str) -> list[str]:
    """The repository's tags (`GET /v2/<name>/tags/list`); [] for an unknown repository."""
    resp = _request("GET", f"{base_url}/v2/{name}/tags/list")
    if resp.status == 404:
        return []
    tags = json.loads(_expect(resp, 200, what=f"list tags of {name}").body).get("tags")
    return sorted(tags or [])


# --- the server ----------------------------------------------------------------------------


@real
@dataclass
class OciRegistry:
    """One `docker-registry serve` process on 127.0.0.1, storing under `root`."""

    binary: str
    directory: Path
    port: int
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, the base URL the helpers take."""
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the registry part of an image reference."""
        return f"{self.host}:{self.port}"

    @property
    def root(self) -> Path:
        return self.directory / "storage"

    @property
    def log(self) -> Path:
        return self.directory / "registry.log"

    def ready(self) -> bool:
        try:
            return _request("GET", f"{self.url}/v2/", timeout=1.0).status == 200
        except OSError:
            return False

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the registry is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.directory / "registry.yml"
        config.write_text(_CONFIG.format(root=self.root, host=self.host, port=self.port))
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, timeout=timeout, what="registry /v2/", alive=self.proc, log=self.log)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a deadline; only this registry's PID."""
        if self.proc is not None:
            stop_process(self.proc, ((signal.SIGTERM, 5.0),))
            self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port and storage (what was pushed stays)."""
        self.stop()
        self.start()

    # the helpers, bound to this registry
    def push_manifest(self, name: str, tag: str) -> str:
        return push_manifest(self.url, name, tag)

    def push_chart(self, name: str, version: str, *, chart: str | None = None) -> str:
        return push_chart(self.url, name, version, chart=chart)

    def manifest_digest(self, name: str, reference: str) -> str | None:
        return manifest_digest(self.url, name, reference)

    def delete_tag(self, name: str, tag: str) -> str:
        return delete_tag(self.url, name, tag)


def find_binary() -> str | None:
    return shutil.which("docker-registry", path="/usr/bin:/usr/sbin:/usr/local/bin")


@real
@contextlib.contextmanager
def running_registry(tmpdir: Path) -> Iterator[OciRegistry]:
    """Start an empty registry (filesystem storage under `tmpdir`, deletes enabled) on a free
    loopback port, wait for `GET /v2/`, yield it; always stop it.

    Skips the test (fails under CI=true) when `docker-registry` is not installed."""
    binary = find_binary()
    if binary is None:
        missing("docker-registry", INSTALL)
    directory = Path(tmpdir) / "oci-registry"
    directory.mkdir(parents=True, exist_ok=True)
    registry: OciRegistry | None = None
    try:
        for attempt in range(3):  # another process may take the free port before we bind it
            registry = OciRegistry(binary, directory, free_port())
            try:
                registry.start()
                break
            except RuntimeError:
                registry.stop()
                if attempt == 2 or "address already in use" not in log_tail(registry.log, 5):
                    raise
        assert registry is not None
        yield registry
    finally:
        if registry is not None:
            registry.stop()
