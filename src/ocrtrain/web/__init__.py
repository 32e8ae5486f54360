"""ocrtrain.web."""
