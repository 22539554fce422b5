#!/usr/bin/env bash
# Checks hangwatch.service with systemd's own tools where they are installed: verify
# (every key and value, as systemd reads them) and security (the sandbox's exposure
# score, which must stay at 2.0 or below). deploy/validate checks the unit everywhere.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze not found: hangwatch.service is checked by deploy/validate alone"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify wants ExecStart's binary to exist; /bin/true stands in for it.
sed 's|^ExecStart=/usr/local/bin/hangwatch|ExecStart=/bin/true|' hangwatch.service >"$tmp/hangwatch.service"
# A key systemd does not know is only a warning to verify: any output fails the check.
if ! out=$(systemd-analyze verify "$tmp/hangwatch.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd-analyze verify hangwatch.service:"
  echo "$out"
  exit 1
fi
if ! systemd-analyze security --offline=yes --threshold=20 "$tmp/hangwatch.service" >"$tmp/security" 2>&1; then
  echo "hangwatch.service: the sandbox is weaker than it was (exposure above 2.0):"
  grep -E '^✗|Overall' "$tmp/security" || cat "$tmp/security"
  exit 1
fi
echo "hangwatch.service: verified; $(grep -o 'Overall exposure level.*' "$tmp/security")"
