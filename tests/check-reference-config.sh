#!/bin/sh
# Fails when conf/drimbox.conf differs from what the schema generates.
# The reference shows the defaults of a packaged install (prefix /usr):
# the build's own data directory ($3) reads /usr/share/drimbox there.
# Regenerate with: tests/check-reference-config.sh DRIMBOXD CONF DATADIR --update
set -eu
generated() { "$1" --print-config | sed "s|$2|/usr/share/drimbox|g"; }
if [ "${4:-}" = --update ]; then
	generated "$1" "$3" > "$2"
	exit 0
fi
generated "$1" "$3" | diff -u "$2" - && exit 0
echo "conf/drimbox.conf is out of date with src/config.c (see $0)"
exit 1
