"""Process-management core: supervisor, signals, process tree and run journal."""
