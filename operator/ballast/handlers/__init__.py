"""kopf entry points. Importing this package registers every handler with kopf's default registry."""

from ballast.handlers import modeldeployment, startup

__all__ = ["modeldeployment", "startup"]
