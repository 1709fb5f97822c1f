"""Retraining: keep the knowledge base and the served adapter in step with changing documents, safely.

`changes` (what changed, since when), `policy` (index only or a new adapter), `gate` (promote or reject),
`lock` (one run at a time), `history` (run reports in the KB), `hooks` (test hooks to kill at a stage).
`run` calls them in order (one pass, or `watch`); `slm retrain` and `pipelines/retrain.py` drive it.
"""
