#!/usr/bin/env bash
#
# check-abi.sh - the symbols libmoor.so exports are its public API and
# nothing else:
#
#   1. every dynamic symbol the library defines is named moor_* (internal
#      functions are hidden: -fvisibility=hidden, MOOR_API on the public
#      ones), so a program's own conn_close() or mem_alloc() cannot clash;
#   2. every function include/moor.h declares with MOOR_API is exported
#      (a declaration with no definition would fail only at a user's link).
#
# usage: scripts/check-abi.sh [path/to/libmoor.so]   (default
# build/release/libmoor.so; `make release` builds it). Prints each problem
# and exits 1, or prints "check-abi: ok (N symbols)" and exits 0.

set -u
cd "$(dirname "$0")/.." || exit 2

lib=${1:-build/release/libmoor.so}
if [ ! -f "$lib" ]; then
    echo "check-abi: $lib is missing (make release)"
    exit 1
fi

# nm -D --defined-only: "ADDRESS TYPE NAME"; version nodes (type A) are not
# symbols of ours.
if ! syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sort -u); then
    echo "check-abi: nm failed on $lib"
    exit 1
fi
failed=0

bad=$(printf '%s\n' "$syms" | grep -v '^moor_' | grep -v '^$')
if [ -n "$bad" ]; then
    echo "check-abi: $lib exports symbols outside moor_*:"
    printf '%s\n' "$bad" | sed -e 's/^/    /'
    failed=1
fi

# The functions moor.h declares with MOOR_API: comments and #-lines
# stripped (the _init() macros and the handler typedef are not functions),
# one ';'-separated declaration per line, the name before its '('.
declared=$(sed -e 's|/\*.*\*/||g' include/moor.h |
    awk '/\/\*/ {c = 1} !c && !/^[[:space:]]*#/ {print} /\*\// {c = 0}' |
    tr '\n' ' ' | tr ';' '\n' | grep 'MOOR_API' |
    sed -nE 's/.*MOOR_API[^(]*\b(moor_[A-Za-z0-9_]+)[[:space:]]*\(.*/\1/p' |
    sort -u)
if [ -z "$declared" ]; then
    echo "check-abi: found no MOOR_API declaration in include/moor.h"
    exit 1
fi
missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$syms"))
if [ -n "$missing" ]; then
    echo "check-abi: declared in moor.h with MOOR_API but not exported by $lib:"
    printf '%s\n' "$missing" | sed -e 's/^/    /'
    failed=1
fi

if [ "$failed" = 0 ]; then
    echo "check-abi: ok ($(printf '%s\n' "$syms" | grep -c .) symbols, all moor_*; $(printf '%s\n' "$declared" | grep -c .) declared in moor.h, all exported)"
fi
exit "$failed"
