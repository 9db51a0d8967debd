# deploybot container: slim Python, non-root, health-checked.
# Build: docker build -t deploybot .   Run: mount a config at /etc/deploybot/config.yaml
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY config ./config
RUN pip install --no-cache-dir . \
    && useradd --system --create-home --home-dir /var/lib/deploybot deploybot \
    && mkdir -p /etc/deploybot \
    && chown deploybot /var/lib/deploybot

USER deploybot
WORKDIR /var/lib/deploybot
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["deploybot"]
CMD ["run", "-c", "/etc/deploybot/config.yaml"]
