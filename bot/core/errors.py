"""Exceptions whose message is the one line a chat user sees."""


class UserError(Exception):
    """Bad input or a refused action: reply with str(self), nothing was changed."""


class Refused(UserError):
    """The user lacks the role for this action (`logged`: already in the SAL)."""

    logged = False


class StartupError(Exception):
    """The bot cannot start (e.g. its HTTP port is taken); str(self) is the one line."""


class StoreError(RuntimeError):
    """The store cannot be opened as it is; the message is one line naming it."""


class GitLabError(Exception):
    """A GitLab call that could not complete; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
