"""kopf entry points. Importing this package registers every handler with kopf's default registry."""

from ballast.handlers import indexes, killswitch, leader, modeldeployment, startup

__all__ = ["indexes", "killswitch", "leader", "modeldeployment", "startup"]
