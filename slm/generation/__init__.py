"""Text generation: model loading, decoding rules (stops, abstention gate) and the backends behind
one protocol (transformers, llama.cpp, an OpenAI-compatible server)."""
