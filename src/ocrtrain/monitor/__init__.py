"""ocrtrain.monitor."""
