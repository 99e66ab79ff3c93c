"""The keeper process backend: one process holds every site's socket and starts,
stops and watches the sites' workers (see :mod:`linohost.keeper.daemon`)."""
