"""linohost: one machine, many Lino sites."""

__version__ = "0.1.0"
