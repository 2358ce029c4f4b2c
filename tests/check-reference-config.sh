#!/bin/sh
# Fails when conf/drimbox.conf differs from what the schema generates
# (regenerate with: build/src/drimboxd --print-config > conf/drimbox.conf).
set -eu
"$1" --print-config | diff -u "$2" - && exit 0
echo "conf/drimbox.conf is out of date with src/config.c"
exit 1
