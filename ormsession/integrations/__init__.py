"""Web framework integrations, each thin over the managers and :mod:`._common`.

- :mod:`ormsession.integrations.wsgi`: any WSGI app (``environ["ormsession.session"]``).
- :mod:`ormsession.integrations.flask`: ``flask.session`` (needs ``ormsession[flask]``).
- :mod:`ormsession.integrations.asgi`: Starlette/FastAPI ``request.session`` on the asyncio
  manager, plus FastAPI's ``SessionDep`` (needs ``ormsession[starlette]``/``[fastapi]``).

Nothing here is imported by ``import ormsession``; each module imports its framework only
when it is itself imported (the ASGI middleware imports none at all).
"""
