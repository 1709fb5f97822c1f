#!/bin/sh
# Re-create this sample corpus from the Debian package python3.11-doc (apt-get install python3.11-doc).
# Files are copied byte for byte; only .html pages, no _static/_sources/_images.
set -eu
SRC=${1:-/usr/share/doc/python3.11/html}
cd "$(dirname "$0")"
copy() { for f in "$@"; do mkdir -p "$(dirname "$f")"; cp "$SRC/$f" "$f"; done; }
copy glossary.html
(cd "$SRC" && ls faq/*.html tutorial/*.html) | while read -r f; do copy "$f"; done
for p in index sorting regex logging functional unicode argparse annotations; do copy "howto/$p.html"; done
for m in index functions stdtypes exceptions os.path pathlib re json csv collections itertools functools \
         dataclasses contextlib logging argparse subprocess asyncio-task; do copy "library/$m.html"; done
