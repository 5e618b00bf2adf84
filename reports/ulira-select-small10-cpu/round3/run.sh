#!/bin/bash
# Round 3: round 2's loop (U-LiRA on the selection pool, then the diagnosis) over round 3's candidates. Run from a
# checkout at d9240ab (neighbours_space exists there) with the data in ./data, alone on the machine:
#   reports/ulira-select-small10-cpu/round3/run.sh STORE OUTDIR
set -euo pipefail
here=$(dirname "$0")
exec "$here/../round2/run.sh" "$1" "$2" "$here/candidates.txt"
