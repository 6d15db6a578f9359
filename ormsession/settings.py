"""Settings from the environment (``ORMSESSION_*``) and ``.env``, via pydantic-settings.

Read only at the edges: :func:`ormsession.configure`, the integrations and the CLI. The
fields are :class:`~ormsession.config.Config`'s, declared there once; this class only adds
where their values come from. Core classes take a ``Config`` and never read the environment.

Every ``ORMSESSION_*`` name in the environment or in ``.env`` must be a setting: a typo
(``ORMSESSION_URLL``) would otherwise be ignored and the sessions would go to the default
SQLite file. The only other names allowed are :data:`NOT_SETTINGS`, read by ormsession's
own test and CI tooling.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic_settings import BaseSettings, SettingsConfigDict

from ormsession.config import DEFAULT_URL, RENAMED_OPTIONS, Config, unknown_options
from ormsession.errors import ConfigurationError

__all__ = ["DEFAULT_URL", "NOT_SETTINGS", "OrmsessionSettings", "load_config"]

PREFIX = "ORMSESSION_"

#: ``ORMSESSION_*`` names that are not settings and are never an error: ormsession's own
#: test suite and CI read them (see docs/configuration.md).
NOT_SETTINGS = frozenset(
    {
        "ORMSESSION_REQUIRE_BACKENDS",  # CI: a missing backend fails the tests
        "ORMSESSION_COUCHBASE_URL",  # the opt-in tests against a real Couchbase Server
        "ORMSESSION_RACE_TABLE",  # where the race suite writes its table
        "ORMSESSION_FAULT_TABLE",  # where the fault suite writes its table
    }
)


class OrmsessionSettings(BaseSettings, Config):
    """A :class:`~ormsession.config.Config` read from ``ORMSESSION_<OPTION>`` environment
    variables and a ``.env`` file in the working directory, under keyword overrides.

    An ``ORMSESSION_*`` name that is no option (in the environment or ``.env``) raises
    :class:`~ormsession.errors.ConfigurationError` naming the closest option."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=".env",
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    def __init__(self, **values: Any) -> None:
        check_variable_names(os.environ, where="the environment")
        env_files = values.get("_env_file", self.model_config.get("env_file"))
        for env_file in env_files if isinstance(env_files, list | tuple) else [env_files]:
            if isinstance(env_file, str | Path) and Path(env_file).is_file():
                check_variable_names(dotenv_values(env_file), where=str(env_file))
        super().__init__(**values)


def load_config(config: Config | None = None, **options: Any) -> Config:
    """The configuration to run with: ``config``, or (when None) the environment and
    ``.env``; either way with ``options`` (any :class:`Config` field) on top."""
    unknown = sorted(set(options) - set(Config.model_fields))
    if unknown:
        raise ConfigurationError(unknown_options(unknown))
    if config is None:
        return OrmsessionSettings(**options)
    return config.replace(**options) if options else config


def check_variable_names(variables: Any, *, where: str) -> None:
    """Refuse every ``ORMSESSION_*`` name in ``variables`` that is no setting (the
    settings are read case-insensitively, so the names are compared that way too)."""
    problems = [
        problem
        for name in sorted(variables)
        if (problem := _name_problem(name.upper())) is not None
    ]
    if problems:
        raise ConfigurationError(f"in {where}: " + "; ".join(problems))


def _name_problem(name: str) -> str | None:
    if not name.startswith(PREFIX) or name in NOT_SETTINGS:
        return None
    option = name.removeprefix(PREFIX).lower()
    if option in Config.model_fields:
        return None
    if option in RENAMED_OPTIONS:
        return f"{name} is now {PREFIX}{RENAMED_OPTIONS[option].upper()}: rename it"
    close = difflib.get_close_matches(option, list(Config.model_fields), n=1, cutoff=0.6)
    hint = (
        f"did you mean {PREFIX}{close[0].upper()}?" if close else "no option has a name close to it"
    )
    return f"{name} is not an ormsession setting ({hint})"
