"""Format loaders: each turns raw bytes of one file format into clean text with sections.

Every loader returns a `Parsed` (see `builder`); `slm.kb.documents` picks the loader by suffix.
"""
