"""The canary run: every configured secret (given with and without trailing whitespace) and a
pod log with the 11 secret shapes, through a deploy, its failure, `!logs`, `!diff`, `!log`,
`!status`, the pages, `/metrics` and the text and JSON logs; then every output, the store and
every file of the state directory are searched: no canary may be found."""

from __future__ import annotations

import io
import logging

import aiohttp
import pytest

from bot.app import App
from bot.core.logs import TEXT
from tests.support.canaries import CANARIES, POD_LOG
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.fakes.kube import pod_json

__all__ = ["bed"]

SECRETS = {  # env var -> the value as the secret store holds it
    "FAKE_SECRET": "s3cr3t-registry-password\n",  # the registry's (the bed's own)
    "CANARY_PAGE_TOKEN": "cnry-page-token-7d1e  \n",
    "CANARY_STORE_PASSWORD": "cnry-store-password-5a2\t",
}


async def test_no_canary_reaches_any_output_the_store_or_the_state_dir(
    bed: DeployBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    clean = [v.strip() for v in SECRETS.values()]
    shapes = list(CANARIES.values())
    leak = " ".join(clean) + "\n" + POD_LOG  # what the outside world says back
    bed.data["http"]["auth"] = {"token_env": "CANARY_PAGE_TOKEN"}
    bed.data["store"] = {"password_env": "CANARY_STORE_PASSWORD"}  # read, redacted, unused
    bed.data["auth"]["rules"].append({"who": ["http:token"], "role": "deployer"})
    previous, latest = bed.pins["toolsbeta"], bed.releases[-1]
    bed.push(previous)
    bed.push(latest)
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=previous)
    bed.kube.add_pod(NS, pod_json(NS, "builds-api-crash", None, "harbor.example.org/x:y",
                                  waiting={"reason": "CrashLoopBackOff", "message": leak},
                                  restarts=3))  # fmt: skip
    bed.kube.set_pod_log(NS, "builds-api-crash", leak)
    bed.script({
        "helmfile diff": {"exit": 2, "output": f"builds-api, Deployment changed\n{leak}"},
        "helmfile apply": {"exit": 1, "output": f"{leak}Error: UPGRADE FAILED: {clean[0]}\n"},
    })  # fmt: skip
    text_log, json_log = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(text_log), logging.StreamHandler(json_log)]
    handlers[0].setFormatter(logging.Formatter(TEXT))
    from bot.core.logs import JsonFormatter

    handlers[1].setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    for h in handlers:
        root.addHandler(h)
    pages: list[str] = []
    token = clean[1]

    async def browse(app: App) -> None:
        base = f"http://{bed.data['http']['listen']}"
        said = app.console.stdout.getvalue() if app.console else ""
        links = [w for w in said.split() if w.startswith(bed.data["bot"]["public_url"])]
        paths = {
            "/sal",
            "/status",
            "/deploys/1",
            "/deploys/1/log",
            "/metrics",
            "/components/builds-api",
        }
        paths |= {link.removeprefix(bed.data["bot"]["public_url"]) for link in links}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for path in sorted(paths):
                for accept in ("text/plain", "text/html"):
                    async with http.get(base + path, headers={"Accept": accept}) as r:
                        pages.append(f"{path} {r.status}\n" + await r.text())

    try:
        s = await bed.run([
            f"!deploy builds-api {latest} to toolsbeta",
            "!logs builds-api toolsbeta",
            f"!diff builds-api {latest} toolsbeta",
            f"!log builds-api {leak.splitlines()[0]} DB_PASSWORD=cnry01-db",
            "!status builds-api toolsbeta",
            "!sal builds-api",
        ], inspect=browse)  # fmt: skip
    finally:
        root.setLevel(old_level)
        for h in handlers:
            root.removeHandler(h)
    said = "\n".join(s.out)
    assert "deploy #1 failed" in said and "logs of builds-api" in said, said
    assert any(p.startswith("/diffs/") for p in pages)
    state = bed.config.bot.state_dir
    files = {
        str(p): p.read_bytes().decode("utf-8", "replace") for p in state.rglob("*") if p.is_file()
    }
    outputs = {
        "chat": said,
        "sal": "\n".join(e.message for e in s.sal),
        "pages": "\n".join(pages),
        "text log": text_log.getvalue(),
        "json log": json_log.getvalue(),
        **files,
    }
    hits = [(where, c) for where, text in outputs.items() for c in clean + shapes if c in text]
    assert hits == [], hits
