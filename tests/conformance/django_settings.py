"""The Django settings Django's own session tests run under, with ormsession's engine.

As Django's ``tests/test_sqlite.py`` (the settings its test suite ships), plus the apps the
session tests import and ``SESSION_ENGINE``. The store comes from ``ORMSESSION_*``
environment variables (:mod:`tests.conformance.test_django_suite` sets them).
"""

SECRET_KEY = "django_tests_secret_key"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3"}}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    # Django's session tests import their own models module.
    "sessions_tests",
]
SESSION_ENGINE = "ormsession.integrations.django"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
