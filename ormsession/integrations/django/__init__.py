"""Django sessions in an ormsession store: ``SESSION_ENGINE = "ormsession.integrations.django"``.

    # settings.py
    SESSION_ENGINE = "ormsession.integrations.django"
    ORMSESSION_DATABASE = "default"      # or ORMSESSION_URL = "redis://localhost:6379/0"

Django's own ``SessionMiddleware``, ``SESSION_COOKIE_*``, ``SESSION_EXPIRE_AT_BROWSER_CLOSE``
and ``SESSION_SAVE_EVERY_REQUEST`` keep working as they do; see docs/integrations/django.md.
"""

from __future__ import annotations

from ormsession.integrations.django.store import SessionStore
from ormsession.integrations.django.users import (
    list_sessions,
    revoke_other_sessions,
    revoke_session,
)

__all__ = ["SessionStore", "list_sessions", "revoke_other_sessions", "revoke_session"]
