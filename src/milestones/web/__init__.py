"""The web door: ``milestone dashboard`` (a Starlette app on uvicorn), its JSON API,
live events (Server-Sent Events), pages and static export.

A door like ``cli/``: it reads and writes through the ``Project`` layer (and
``agents``), never a store. Nothing here is imported by another command: the
ASGI stack loads only when the dashboard starts (the ``web`` extra).
"""
