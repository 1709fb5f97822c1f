"""Recipe: follow document changes once: detect → re-ingest → retrain? → evaluate → promote? (= `slm retrain`).

    python -m pipelines.retrain --kb .slm [--root corpora/python-docs] [--qa held_out.jsonl] [--force-train]

Every stage lives in slm/ (slm.retraining); this file only calls the pass and exits with its code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slm.config import load_settings
from slm.retraining.run import run_pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--root", help="the source (folder, URL, s3://, git+...); default: the one last ingested")
    parser.add_argument("--qa", type=Path, help="held-out questions the candidate is gated on")
    parser.add_argument("--force-train", action="store_true")
    args = parser.parse_args()
    settings = load_settings(config_file=args.config, kb=args.kb)                     # 1. settings
    record = run_pass(settings, root=args.root, qa_file=args.qa,                       # 2. one pass
                      force_train=args.force_train, progress=True)
    return record.outcome.exit_code                                                    # 3. its exit code


if __name__ == "__main__":
    sys.exit(main())
