"""Functional tests after a deploy (`deploy.test`, e.g. toolforge-deploy's bats suite).

Their output is kept behind a link (a `/diffs/<id>` page, secrets redacted), summarised in
chat as passed/failed counts (TAP `ok`/`not ok` lines, else a pytest-style summary, else the
exit status), and posted with its last lines to the bump MR. A failure fails the deploy with
the next step: `!rollback`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bot.deploy.model import Deploy
from bot.deploy.steps import Steps
from bot.services import Services

_TAP_OK = re.compile(r"^ok [0-9]+", re.MULTILINE)
_TAP_NOT_OK = re.compile(r"^not ok [0-9]+", re.MULTILINE)
_PYTEST = re.compile(r"([0-9]+) (passed|failed|errors?)\b")
MR_TAIL = 20  # output lines quoted in the MR note


@dataclass(frozen=True)
class TestReport:
    ok: bool
    summary: str  # "12 passed, 1 failed"
    link: str | None
    tail: str  # the last lines of output (redacted)

    def line(self) -> str:
        return f"functional tests {self.summary}" + (f": {self.link}" if self.link else "")


def summarize(output: str, returncode: int | None) -> str:
    ok, bad = len(_TAP_OK.findall(output)), len(_TAP_NOT_OK.findall(output))
    if ok or bad:
        return f"{ok} passed, {bad} failed"
    counts = {"passed": 0, "failed": 0}
    for n, word in _PYTEST.findall(output):
        counts["passed" if word == "passed" else "failed"] += int(n)
    if any(counts.values()):
        return f"{counts['passed']} passed, {counts['failed']} failed"
    if returncode is None:
        return "killed (deploy.timeout)"
    return "passed (exit 0)" if returncode == 0 else f"failed (exit {returncode})"


async def run_tests(services: Services, steps: Steps, d: Deploy, cwd: Path) -> TestReport:
    """Run `deploy.test` for deploy `d`; never raises for a failing suite (see `ok`)."""
    template = services.config.deploy.test or []
    result = await steps.run(d, "test", template, cwd, check=False)
    text = services.redactor(result.output)
    link = await services.diffs.save(text) if services.diffs is not None else None
    tail = "\n".join(text.rstrip("\n").splitlines()[-MR_TAIL:])
    return TestReport(result.returncode == 0, summarize(text, result.returncode), link, tail)
