"""What tests share: real-server runners, HTTP fakes of GitLab/Kubernetes/registry, and
the beds (worlds) that wire them to the real app. Data lives beside them: `fixtures/`
(payloads, control repo), `servers/` (server config templates), `bin/` (recording helm).

Real servers (PostgreSQL, an OCI registry) start from Debian packages on loopback: each module
starts its server in a temporary directory on a free 127.0.0.1 port, waits for it with a
deadline (never a fixed sleep), and stops only the processes it started. `pytest_plugin` turns
them into pytest fixtures (`pytest_plugins = ["tests.support.pytest_plugin"]`).
"""

from pathlib import Path

SUPPORT = Path(__file__).parent
FIXTURES = SUPPORT / "fixtures"
