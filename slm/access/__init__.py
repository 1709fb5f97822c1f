"""Access control: audience labels and the one adapter rule, globs, the audit log."""
