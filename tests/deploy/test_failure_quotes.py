"""A failed deploy quotes the meaningful line of helm's recorded output (not the caret under
a traceback) and, for known helm and Kubernetes failures, a hint ending in the next command."""

from __future__ import annotations

import pytest

from tests.support.deployworld import DeployBed, bed
from tests.support.shown import said

__all__ = ["bed"]

# What helm/helmfile really print in these failures (recorded), noise after the error line.
NO_DEPLOYED = (
    "Building dependency release=builds-api, chart=tools/builds-api\n"
    'Error: UPGRADE FAILED: "builds-api" has no deployed releases\n'
    "\n"
    'in ./helmfile.yaml: command "/usr/local/bin/helm" exited with non-zero status:\n'
    "    ^\n"
)
IN_PROGRESS = (
    "Upgrading release=builds-api, chart=tools/builds-api\n"
    "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n"
    "  ^~~~~\n"
    "exit status 1\n"
)
TIMED_OUT = (
    "Upgrading release=builds-api, chart=tools/builds-api\n"
    "Error: UPGRADE FAILED: timed out waiting for the condition\n"
    "    ^\n"
)

# helm's client losing the API server under load (the pipeline admin page's "EOF" errors)
LOST_EOF = (
    "Upgrading release=builds-api, chart=tools/builds-api\n"
    'Error: UPGRADE FAILED: Get "https://k8s.example.org:6443/api/v1/namespaces/builds-api/'
    'secrets?labelSelector=name%3Dbuilds-api": EOF\n'
    "exit status 1\n"
)
LOST_DEADLINE = (
    "Upgrading release=builds-api, chart=tools/builds-api\n"
    'Error: Kubernetes cluster unreachable: Get "https://k8s.example.org:6443/version":'
    " context deadline exceeded\n"
)
# the planner's step for toolsbeta, whose pin is not what runs: apply it again
RETRY = (
    "the release may have changed: check"
    " !status builds-api toolsbeta, then !apply builds-api toolsbeta to retry"
)


@pytest.mark.parametrize(
    ("output", "quoted", "advice"),
    [
        (
            NO_DEPLOYED,
            'apply exited 1: Error: UPGRADE FAILED: "builds-api" has no deployed releases',
            "!rollback builds-api toolsbeta --emergency",
        ),
        (
            IN_PROGRESS,
            "apply exited 1: Error: UPGRADE FAILED: another operation (install/upgrade/rollback)"
            " is in progress",
            "check !status builds-api toolsbeta, then !rollback builds-api toolsbeta --emergency",
        ),
        (
            TIMED_OUT,
            "apply exited 1: Error: UPGRADE FAILED: timed out waiting for the condition",
            "check !status builds-api toolsbeta, read the log, then !rollback builds-api toolsbeta",
        ),
        (LOST_EOF, '/secrets?labelSelector=name%3Dbuilds-api": EOF', RETRY),
        (LOST_DEADLINE, '/version": context deadline exceeded', RETRY),
    ],
)
async def test_failed_apply_quotes_the_error_line_and_a_hint(
    bed: DeployBed, output: str, quoted: str, advice: str
) -> None:
    bed.push(bed.pins["toolsbeta"])
    bed.script({"helmfile apply": {"exit": 1, "output": output}})

    s = await bed.run(["!apply builds-api toolsbeta"])

    line = said(s.out)[-1]
    assert line.startswith("deploy #1 failed: builds-api ")
    assert quoted in line
    assert "^" not in line
    hint = line.split(" · hint: ", 1)[1]
    assert advice in hint and hint.endswith("/deploys/1/log")
    assert s.sal[-1].result == "failed" and quoted in s.sal[-1].message
