"""The `slm` command line: thin commands over the library."""
