"""Real servers for tests (PostgreSQL, an OCI registry), started from Debian packages on loopback.

Each module starts its server in a temporary directory on a free 127.0.0.1 port, waits for it
with a deadline (never a fixed sleep), and stops only the processes it started.
`pytest_plugin` turns them into pytest fixtures (`pytest_plugins = ["tests.support.pytest_plugin"]`).
"""
