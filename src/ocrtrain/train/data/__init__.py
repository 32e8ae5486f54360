"""Data for the recognizer: the charset, synthetic receipt lines, `labels.tsv` folders."""
