"""What tests share: real-server runners, HTTP fakes of GitLab/Kubernetes/registry, and
the beds (worlds) that wire them to the real app. Data lives beside them: `fixtures/`
(payloads, control repo), `servers/` (server config templates), `bin/` (recording helm)."""

from pathlib import Path

SUPPORT = Path(__file__).parent
FIXTURES = SUPPORT / "fixtures"
