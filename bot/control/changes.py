"""What a deploy brings: the commits of a component between the running and the new version.

Versions are release tags of the component's repository, so the range is `old..new` between
two tags: `git log` in the bot's mirror clone (plain git), or GitLab's compare API. Merge
commits are left out. `!diff`, the deploy announcement and the bump MR description show the
count and the first few (subject and author); the full list goes on the diff page or the MR.
"""

from __future__ import annotations

from dataclasses import dataclass

INLINE = 3  # commits named in a chat line; the rest are behind the link
MR_LIST = 50  # commits listed in an MR description


@dataclass(frozen=True)
class Change:
    sha: str
    author: str
    subject: str

    def short(self) -> str:
        return f"{self.sha[:8]} {self.subject[:80]} ({self.author})"


@dataclass(frozen=True)
class Changes:
    """Commits in `old..new`, newest first."""

    old: str
    new: str
    commits: tuple[Change, ...]

    def line(self, link: str | None = None) -> str:
        """`brings 5 commits: a1b2c3d4 fix x (Alice); … and 2 more: <link>`."""
        n = len(self.commits)
        if n == 0:
            return f"brings no commits ({self.old} and {self.new} are built from the same code)"
        shown = "; ".join(c.short() for c in self.commits[:INLINE])
        text = f"brings {n} commit{'s' if n > 1 else ''}: {shown}"
        if n > INLINE:
            text += f" and {n - INLINE} more" + (f": {link}" if link else "")
        return text

    def back_line(self, link: str | None = None) -> str:
        """Going back from `new` to `old`: `takes back 2 commits: a1b2c3d4 fix x (Alice); …`."""
        n = len(self.commits)
        if n == 0:
            return f"takes back no commits ({self.old} and {self.new} are built from the same code)"
        shown = "; ".join(c.short() for c in self.commits[:INLINE])
        text = f"takes back {n} commit{'s' if n > 1 else ''}: {shown}"
        if n > INLINE:
            text += f" and {n - INLINE} more" + (f": {link}" if link else "")
        return text

    def listing(self, limit: int | None = None) -> str:
        """One `- sha subject (author)` line per commit, for a page or an MR description."""
        shown = self.commits if limit is None else self.commits[:limit]
        lines = [f"- {c.sha[:8]} {c.subject} ({c.author})" for c in shown]
        if limit is not None and len(self.commits) > limit:
            lines.append(f"- … and {len(self.commits) - limit} more")
        head = f"Commits from {self.old} to {self.new} ({len(self.commits)}):"
        return "\n".join([head, *lines])


def parse_git_log(out: str) -> list[Change]:
    """`git log --format=%H%x1f%an%x1f%s` output."""
    found = []
    for line in out.splitlines():
        parts = line.split("\x1f")
        if len(parts) == 3:
            found.append(Change(parts[0], parts[1], parts[2]))
    return found
