"""What the control repo needs of GitLab, as a port: the edges sit side by side, so
`bot.control` never imports the client in `bot.gitlab`; the composition root passes it in.

`bot.gitlab.api.GitLabAPI` implements it (mypy checks that where the root builds the forge).
"""

from __future__ import annotations

from typing import Any, Protocol


class GitLabPort(Protocol):
    async def get_file(self, project: str | int, path: str, ref: str) -> str | None: ...
    async def file_history(
        self, project: str | int, path: str, ref: str, limit: int = 30
    ) -> list[str]: ...
    async def find_open_mr(
        self, project: str | int, source_branch: str
    ) -> dict[str, Any] | None: ...
    async def get_branch(self, project: str | int, name: str) -> dict[str, Any] | None: ...
    async def create_commit(
        self,
        project: str | int,
        branch: str,
        message: str,
        actions: list[dict[str, Any]],
        start_branch: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]: ...
    async def delete_branch(self, project: str | int, name: str) -> bool: ...
    async def update_mr(
        self,
        project: str | int,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]: ...
    async def create_mr(
        self, project: str | int, source: str, target: str, title: str, description: str
    ) -> dict[str, Any]: ...
    async def merge_requests_from(
        self, project: str | int, source_branch: str, limit: int = 20
    ) -> list[dict[str, Any]]: ...
    async def get_commit(self, project: str | int, sha: str) -> dict[str, Any] | None: ...
    async def list_tags(self, project: str | int) -> list[Any]: ...
    async def commit_merge_requests(self, project: str | int, sha: str) -> list[dict[str, Any]]: ...
    async def compare(self, project: str | int, old: str, new: str) -> list[dict[str, Any]]: ...
