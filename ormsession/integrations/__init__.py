"""Web framework integrations, each thin over the managers and :mod:`._common`.

- :mod:`ormsession.integrations.wsgi`: any WSGI app (``environ["ormsession.session"]``).
- :mod:`ormsession.integrations.flask`: ``flask.session`` (needs ``ormsession[flask]``).
- :mod:`ormsession.integrations.quart`: ``quart.session`` on the asyncio manager, with the
  Flask extension's API and rules (:mod:`._flask_family`) (needs ``ormsession[quart]``).
- :mod:`ormsession.integrations.asgi`: Starlette/FastAPI ``request.session`` on the asyncio
  manager, plus FastAPI's ``SessionDep`` (needs ``ormsession[starlette]``/``[fastapi]``);
  Litestar's ``request.session`` too (docs/integrations/litestar.md). aiohttp has a recipe
  over the asyncio manager (docs/integrations/aiohttp.md).

Nothing here is imported by ``import ormsession``; each module imports its framework only
when it is itself imported (the ASGI middleware imports none at all).
"""
