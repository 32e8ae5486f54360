"""The UI's HTTP routes, one module per area."""
