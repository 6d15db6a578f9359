"""Small helpers shared by the integration tests."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SetCookie:
    """One parsed ``Set-Cookie`` header value."""

    name: str
    value: str
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def deletes(self) -> bool:
        return self.value == "" and self.attributes.get("max-age") == "0"

    def same_scope(self) -> dict[str, str]:
        """The attributes that must match between setting and deleting a cookie."""
        keys = ("path", "domain", "secure", "samesite", "httponly")
        return {key: self.attributes[key] for key in keys if key in self.attributes}


def parse_set_cookie(header: str) -> SetCookie:
    first, *rest = header.split(";")
    name, _, value = first.strip().partition("=")
    attributes = {}
    for part in rest:
        key, _, attribute_value = part.strip().partition("=")
        attributes[key.lower()] = attribute_value or "yes"
    return SetCookie(name, value, attributes)


def only_set_cookie(headers: list[str]) -> SetCookie:
    assert len(headers) == 1, headers
    return parse_set_cookie(headers[0])


def starlette_test_client() -> Any:
    """Starlette's TestClient, imported without its notice that it prefers ``httpx2``
    (the project tests with httpx, which it still fully supports)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient
