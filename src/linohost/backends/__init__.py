"""Backends: databases, web servers, process managers."""
