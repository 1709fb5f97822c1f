"""Specialising a model on the knowledge base: teacher QA, RAFT examples, LoRA loop, distillation."""
