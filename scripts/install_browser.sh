#!/bin/sh
# Debian's chromium and chromium-driver for the console's browser tests (tests/e2e/test_console.py), which
# `make test` and `make test-e2e` run first. Installs them when missing and when it can (root, apt-get);
# otherwise it says why and the browser tests skip with that reason. It never fails the build itself.
set -u

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install_browser: chromium/chromedriver missing and not root: the console's browser tests will be skipped" \
         "(as root: apt-get install chromium chromium-driver)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: chromium/chromedriver missing and no apt-get here: the console's browser tests will be" \
         "skipped (install a Chromium and its chromedriver, on the PATH as chromium and chromedriver)" >&2
    exit 0
fi
echo "install_browser: installing chromium and chromium-driver (apt-get) for the console's browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >/dev/null; then
    echo "install_browser: apt-get could not install chromium chromium-driver: the console's browser tests will be" \
         "skipped" >&2
fi
exit 0
