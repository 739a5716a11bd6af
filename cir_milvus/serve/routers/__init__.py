"""The service's routes, one router per concern: ``search``, ``images``, ``admin`` (add, info, health, the page)."""
