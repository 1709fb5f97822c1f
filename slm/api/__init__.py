"""The HTTP API: OpenAI-compatible chat completions with citations, a native /v1/answer, keys and limits."""
