"""Every pin of the control repo at one commit, read with a single `git cat-file --batch`.

`!status` and the monitors need all pins of all components at once; one `git show` per file
costs a process each (hundreds for a big control repo). This reads every candidate pin file
of the plain git checkout in one process and keeps the texts for that commit, so reading
again costs one `git rev-parse` until the branch moves. Pins are then parsed by the same
`bot.control.bumper.read_pins` the bumps use.
"""

from __future__ import annotations

import asyncio

from bot.config.model import Config
from bot.control.bumper import read_pins
from bot.control.pins import PinError, pin_file_candidates
from bot.control.repo import ControlRepo
from bot.core.git import git_bytes

_TIMEOUT = 60.0


async def cat_files(workdir: str, rev: str, paths: list[str]) -> dict[str, str | None]:
    """The text of each path at `rev` (None: no such file), from one `git cat-file --batch`."""
    request = "".join(f"{rev}:{p}\n" for p in paths).encode()
    out = await git_bytes("cat-file", "--batch", cwd=workdir, timeout=_TIMEOUT, stdin=request)
    texts: dict[str, str | None] = {}
    pos = 0
    for path in paths:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if header[-1] == b"missing" or len(header) != 3:
            texts[path] = None
            continue
        size = int(header[2])
        texts[path] = (
            out[pos : pos + size].decode(errors="replace") if header[1] == b"blob" else None
        )
        pos += size + 1
    return texts


class PinSnapshot:
    """Pins at the tip of the control repo's branch, re-read only when the branch moves."""

    def __init__(self, config: Config, control: ControlRepo) -> None:
        self.config = config
        self.control = control
        self._rev = ""
        self._texts: dict[str, str | None] = {}
        self._lock = asyncio.Lock()

    @property
    def rev(self) -> str:
        """The commit the texts were read at ("" before the first refresh)."""
        return self._rev

    def _paths(self) -> list[str]:
        paths: list[str] = []
        for name, comp in self.config.components.items():
            for env in self.config.env_names:
                for pin in comp.pins:
                    try:
                        paths += pin_file_candidates(pin.file, name, env)
                    except PinError:
                        continue  # reported per pin by read_pins
        return list(dict.fromkeys(paths))

    async def refresh(self, max_age: float) -> None:
        """Fetch (at most every `max_age` s) and re-read the files if the branch moved."""
        async with self._lock:
            await self.control.sync(max_age=max_age)
            rev = await self.control.rev()
            if rev != self._rev:
                self._texts = await cat_files(str(self.control.workdir), rev, self._paths())
                self._rev = rev

    async def pinned(self, component: str, env: str) -> list[str]:
        """The values of every pin of component in env (BumpError when one is unreadable)."""

        async def read(path: str) -> str | None:
            if path in self._texts:
                return self._texts[path]
            return await self.control.read(path, self._rev or None)

        return [p.value for p in await read_pins(self.config, component, [env], read)]
