"""Config of planned deploy freezes (`freezes:`) and the optional iCalendar feed."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, field_validator, model_validator

from bot.config.base import Model


class FreezeConfig(Model):
    """One planned freeze: no deploys to `envs` (or every environment: `[all]`) from
    `start` to `end`, except `--emergency` and an admin's `--force` with a reason."""

    envs: list[str] = Field(min_length=1)
    start: datetime
    end: datetime
    reason: str = Field(min_length=1, max_length=300)
    author: str = "the config"

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    @model_validator(mode="after")
    def _order(self) -> FreezeConfig:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self
