"""Attacks on the running product (issue 14), kept as regressions that every later change runs."""
