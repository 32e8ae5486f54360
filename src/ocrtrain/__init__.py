"""ocrtrain: an OCR training pipeline whose runs never leave a process behind."""

__version__ = "0.1.0"
