"""Validated data: the host, its configuration, sites, environments, apps."""
