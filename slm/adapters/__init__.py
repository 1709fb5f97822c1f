"""Tuned adapters: the registry, the one promotion gate, merging and GGUF export."""
