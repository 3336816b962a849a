#!/bin/sh
# Installs, with apt-get, only the Debian 12 packages moor needs that are not
# installed yet. Run as root (make run / make test call it). Idempotent and
# quiet when nothing is missing.
set -eu

PKGS="build-essential clang clang-format pkg-config libssl-dev libcmocka-dev \
python3 python3-pytest curl wrk nginx-light prometheus"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "moor: missing Debian packages:$missing" >&2
    echo "moor: run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "moor: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
