#!/usr/bin/env bash
# Fails when a tracked file points outside the repository: at a sibling folder of the clone
# (the workspace's shared folder) or at an absolute path of one machine (a home or work directory). A clone has
# neither; what such a file would cite belongs in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\.\./shared|(^|[^A-Za-z0-9_.])/(work|root|home|Users)/'
if git grep -n -I -E "$pattern" -- . ':!*.lock' ':!scripts/check-self-contained.sh'; then
    echo "error: the lines above point outside the repository; cite docs/ instead" >&2
    exit 1
fi
echo "self-contained: no tracked file points outside the repository"
