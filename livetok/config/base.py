"""What every section's model shares: unknown keys refused, frozen, the one rule for names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Source, group, sink and instance names: they end up in topics, file names and metric labels.
NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .nan/.inf: "a finite number"
