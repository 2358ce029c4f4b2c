#!/bin/sh
# Fails, listing the files, when a C/C++ source is not clang-formatted.
set -eu
cd "$1"
bad=""
for f in $(git ls-files --cached --others --exclude-standard '*.c' '*.h' '*.cc' 2>/dev/null || find src dicom tests -name '*.[ch]' -o -name '*.cc'); do
	[ -f "$f" ] || continue
	if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
		bad="$bad $f"
	fi
done
if [ -n "$bad" ]; then
	echo "not clang-formatted (run: clang-format -i$bad)"
	exit 1
fi
