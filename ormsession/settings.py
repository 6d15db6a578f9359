"""Settings from the environment (``ORMSESSION_*``) and ``.env``, via pydantic-settings.

Read only at the edges: :func:`ormsession.configure`, the integrations and the CLI. The
fields are :class:`~ormsession.config.Config`'s, declared there once; this class only adds
where their values come from. Core classes take a ``Config`` and never read the environment.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from ormsession.config import DEFAULT_URL, RENAMED_OPTIONS, Config, unknown_options
from ormsession.errors import ConfigurationError

__all__ = ["DEFAULT_URL", "OrmsessionSettings", "load_config"]


class OrmsessionSettings(BaseSettings, Config):
    """A :class:`~ormsession.config.Config` read from ``ORMSESSION_<OPTION>`` environment
    variables and a ``.env`` file in the working directory, under keyword overrides."""

    model_config = SettingsConfigDict(
        env_prefix="ORMSESSION_",
        env_file=".env",
        extra="ignore",
        validate_default=True,
        frozen=True,
    )


def load_config(config: Config | None = None, **options: Any) -> Config:
    """The configuration to run with: ``config``, or (when None) the environment and
    ``.env``; either way with ``options`` (any :class:`Config` field) on top."""
    unknown = sorted(set(options) - set(Config.model_fields))
    if unknown:
        raise ConfigurationError(unknown_options(unknown))
    if config is None:
        _refuse_renamed_variables()
        return OrmsessionSettings(**options)
    return config.replace(**options) if options else config


def _refuse_renamed_variables() -> None:
    """A variable under an option's old name would otherwise be silently ignored (the
    settings read only current names), leaving the store on a default the operator did
    not choose."""
    for old, new in RENAMED_OPTIONS.items():
        variable = f"ORMSESSION_{old.upper()}"
        if variable in os.environ:
            raise ConfigurationError(f"{variable} is now ORMSESSION_{new.upper()}: rename it")
