"""The 11 secret shapes of the adversarial run, as lines of a pod log (tests/security)."""

from __future__ import annotations

# each line: the value that must not show, in the shape it has in a real log
CANARIES = {
    "DB_PASSWORD=cnry01-db": "cnry01-db",
    "PGPASSWORD=cnry02pg": "cnry02pg",
    "aws_secret_access_key=cnry03AwsSecretKeyAbCdEfGhIjKlMnOpQr": "cnry03AwsSecretKeyAbCdEfGhIjKlMnOpQr",
    'MYSQL_ROOT_PASSWORD: "cnry04mysql"': "cnry04mysql",
    "dsn postgres://app:cnry05url@db:5432/app": "cnry05url",
    "exec server --password cnry06flag --verbose": "cnry06flag",
    "X-Deploy-Auth: cnry07header": "cnry07header",
    "the admin password is cnry08prose, keep it safe": "cnry08prose",
    "connecting with password=cnry09kv": "cnry09kv",
    "token: cnry10tok": "cnry10tok",
    "Authorization: Bearer cnry11bearer.payload": "cnry11bearer",
}
POD_LOG = "booting\n" + "\n".join(CANARIES) + "\npanic: cannot reach the database\n"
