"""Web servers: the embedded Apache of `linohost serve` and the system's Apache."""
