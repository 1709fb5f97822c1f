"""Thin launcher: `python ui/app.py [--host H] [--port P] [--kb DIR] [--config FILE]` runs the chat.

The app lives in `slm.webui` so the installed `slm ui` command can import it (only `slm*` packages are
installed) and `slm/` never imports this folder. `build_app` is re-exported for callers of the contract.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from slm.webui.app import build_app, create_server, serve  # noqa: E402

__all__ = ["build_app", "create_server", "serve", "main"]


def main(argv: list[str] | None = None) -> None:
    from slm.config import load_settings
    from slm.errors import SlmError

    parser = argparse.ArgumentParser(description="The slm employee chat.")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--kb")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    try:
        serve(load_settings(config_file=args.config, kb=args.kb, overrides={"ui.host": args.host, "ui.port": args.port}))
    except SlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
