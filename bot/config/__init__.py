"""The typed configuration: pydantic models loaded from YAML, errors at their YAML path,
secret checks, and the roles the `auth.rules` grant (core tier: imports only `bot.core`)."""
