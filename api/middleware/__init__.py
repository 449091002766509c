"""ASGI middleware that guards the app before any route runs: body size, admission."""
