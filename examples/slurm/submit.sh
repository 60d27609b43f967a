#!/bin/bash
# Submit the Synthia array and its merge job: examples/slurm/submit.sh [TASKS]
set -euo pipefail
TASKS=${1:-16}
here=$(cd "$(dirname "$0")" && pwd)
array=$(sbatch --parsable --array=0-$((TASKS - 1)) "$here/synthia_array.sbatch")
sbatch --dependency=afterok:"${array%%;*}" "$here/synthia_merge.sbatch"
