"""Effects: files, databases, environments, processes. Each step undoable."""
