#!/bin/sh
# Run by meson install (make install): copies the viewer that make built
# (node viewer/build.mjs, outside meson) and installs the reference
# configuration as drimbox.conf where there is none yet; a site's own file
# is never replaced. $1: the built viewer, $2: its install directory,
# $3: the configuration directory. DESTDIR is meson's.
set -eu
viewer=$1 to="${DESTDIR:-}$2" confdir="${DESTDIR:-}$3"
if [ ! -f "$viewer/index.html" ]; then
	echo "install-extra: $viewer/index.html missing: build with make" >&2
	exit 1
fi
mkdir -p "$to"
cp -R "$viewer/." "$to/"
if [ ! -e "$confdir/drimbox.conf" ]; then
	install -m 0644 "$confdir/drimbox.conf.reference" "$confdir/drimbox.conf"
fi
