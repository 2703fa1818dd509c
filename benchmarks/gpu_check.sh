#!/usr/bin/env bash
# The device check of issue 41, as the device tool runs it: one command, under 8 minutes on one GPU.
#   bash benchmarks/gpu_check.sh            # on the GPU machine: $OUT/gpu_check.json
#   bash benchmarks/gpu_check.sh --dry-run  # here, on the CPU with tiny settings
# The GPU image has torch, timm, Lightning, pandas, scikit-learn, scipy and Pillow but reaches no package
# registry: wheels it lacks (mlxtend, iterative-stratification, ...) travel in wheels/ (see benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d wheels ]; then pip install --no-index --find-links wheels -q mlxtend iterative-stratification filelock jinja2 \
    >/dev/null 2>&1 || echo "warning: some carried wheels did not install" >&2; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
photos=()
if [ -d carried/dvc ] && [ -d carried/weights ]; then photos=(--photos carried/dvc --weights-dir carried/weights); fi
exec python -m benchmarks.gpu_check --out "${OUT:-.}" "${photos[@]}" "$@"
