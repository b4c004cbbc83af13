"""Routing policies, one file each; the registry (``gateway.routing.registry``) names them."""
