#!/usr/bin/env bash
# Install promptsep with its test extras into .venv and run the test suite.
# System packages the tests drive for real (headless Chromium for the demo's browser
# test, espeak-ng for corpus tests) are installed with apt when we are root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
  command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
  if [ ${#missing[@]} -gt 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
      || echo "warning: could not install ${missing[*]}; the tests that need them are skipped"
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e ".[test]"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
