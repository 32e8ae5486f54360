"""ocrtrain.train."""
