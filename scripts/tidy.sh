#!/usr/bin/env bash
# Runs clang-tidy (the checks of .clang-tidy) on every source file under
# src/, using build/compile_commands.json (scripts/build.sh writes it).
# Exits 1 when a check fires, listing each finding as FILE:LINE: message.
# Usage: scripts/tidy.sh [FILE...]   (default: every src/**/*.cc)
# HERALD_JOBS (default 2) files are checked at once.
set -euo pipefail
cd "$(dirname "$0")/.."
tidy=$(command -v clang-tidy-14 || command -v clang-tidy || true)
if [[ -z $tidy ]]; then
  echo "tidy: clang-tidy is not installed (scripts/setup.sh installs it)" >&2
  exit 2
fi
if [[ ! -f build/compile_commands.json ]]; then
  echo "tidy: no build/compile_commands.json; run scripts/build.sh first" >&2
  exit 2
fi
if (($#)); then
  files=("$@")
else
  mapfile -t files < <(find src -name '*.cc' | sort)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One clang-tidy per file, HERALD_JOBS at a time; each writes its own log.
printf '%s\n' "${files[@]}" |
  xargs -P "${HERALD_JOBS:-2}" -I{} sh -c \
    '"$0" -p build --quiet "$1" >"$2/$(echo "$1" | tr / _).log" 2>/dev/null || true' \
    "$tidy" {} "$out"
# Findings: "path:line:col: warning|error: message [check]", once each
# (a header's finding repeats for every file that includes it).
findings=$(cat "$out"/*.log | grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' |
  sed "s|^$PWD/||" | sort -u || true)
if [[ -n $findings ]]; then
  echo "$findings"
  echo "tidy: $(echo "$findings" | wc -l) finding(s) in ${#files[@]} files" >&2
  exit 1
fi
echo "tidy: ${#files[@]} files clean"
