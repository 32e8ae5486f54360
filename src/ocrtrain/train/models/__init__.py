"""Recognizer networks."""
