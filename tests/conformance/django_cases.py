"""Django's own session tests, pointed at ormsession's ``SessionStore``.

Imported by the test module the Django conformance suite generates in Django's unpacked
test tree (see :mod:`tests.conformance.test_django_suite`), with that tree on the path:
Django's ``SessionTestsMixin`` runs, unmodified, as Django runs it for its own backends
(once as is, once under ``USE_TZ=True``), and ``SessionMiddlewareTests`` runs as Django's
own class, its session middleware reading ``SESSION_ENGINE`` from the settings.
"""

from __future__ import annotations

from django.test import SimpleTestCase, override_settings
from sessions_tests.tests import SessionMiddlewareTests, SessionTestsMixin

from ormsession.integrations.django import SessionStore

__all__ = ["OrmsessionSessionTests", "OrmsessionSessionWithTimeZoneTests", "SessionMiddlewareTests"]


class OrmsessionSessionTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore
    session_engine = "ormsession.integrations.django"


@override_settings(USE_TZ=True)
class OrmsessionSessionWithTimeZoneTests(OrmsessionSessionTests):
    pass
