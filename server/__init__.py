"""The HTTP lookup service: `create_app(project)` returns the FastAPI app; `featurestore serve` runs it."""

from server.app import create_app

__all__ = ["create_app"]
