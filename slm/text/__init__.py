"""Text rules in one place: which language a text is in, and how it splits into words per language."""
