#!/bin/sh
# results/REPRODUCTION.md: FFB's Table 4 (tabular, its own setting) and, at the converged CPU setting of
# Biased-MNIST (--recipe cpu-converged, docs/BIASED_MNIST.md), ReBias's and EnD's Table 1; then the trial
# table results/reproduce/trials.jsonl.gz that rebuilds it. Run from the repository root:
#
#     sh results/reproduce.sh             # resumable: every step skips the trials the store holds complete
#     IMPORT=1 sh results/reproduce.sh    # on another machine: first load the committed trial table
#
# The steps, in the order they ran (2026-12-04, the 2-core AMD EPYC development machine with
# avx512_bf16, two trials at a time on one thread each):
#   1. ReBias Table 1, vanilla, 4 rhos x 3 seeds (12 trials);
#   2. the same configurations at rho 0.99 and 0.997 with precision=fp32 (6 trials): whether the fast path
#      changes the figures (docs/BIASED_MNIST.md, "Whether the fast path changes the figures"); ran with
#      `bench run`, now `bench sweep --grid` (the same trials by config hash), which skips them when complete;
#   3. EnD Table 1, 4 rhos x 3 grid points (alpha = beta, published.toml) x 3 seeds (36 trials), every rho's
#      first point (the authors' default) before any second;
#   4. FFB Table 4 (60 trials, serial: the tabular trials are short);
#   5. the report from the store (runs nothing), and the trial table.
set -eu

BENCH=${BENCH:-.venv/bin/bench}
TRACKING_URI=${TRACKING_URI:-sqlite:///../mlflow-reproduce.db}
DATA_ROOT=${DATA_ROOT:-../shared/data}
TABLE=${TABLE:-results/reproduce/trials.jsonl.gz}
IMPORT=${IMPORT:-0}
WHERE="--data-root $DATA_ROOT --tracking-uri $TRACKING_URI"

if [ "$IMPORT" = 1 ]; then
    "$BENCH" import "$TABLE" --experiment reproduce --tracking-uri "$TRACKING_URI"
fi
# shellcheck disable=SC2086
"$BENCH" reproduce rebias-table1 --recipe cpu-converged --cpus-per-trial 1 --max-concurrent 2 $WHERE \
    --output /tmp/reproduce-rebias.md
# shellcheck disable=SC2086
"$BENCH" sweep --grid --methods vanilla --datasets biased_mnist:rho=0.99:split=reference,biased_mnist:rho=0.997:split=reference \
    --recipe cpu-converged --train precision=fp32 --seeds 3 --cpus-per-trial 1 --max-concurrent 2 $WHERE \
    --experiment reproduce --results-dir /tmp/precision-check --quiet
# shellcheck disable=SC2086
"$BENCH" reproduce end-table1 --recipe cpu-converged --cpus-per-trial 1 --max-concurrent 2 $WHERE \
    --output /tmp/reproduce-end.md
# shellcheck disable=SC2086
"$BENCH" reproduce ffb-table4 --executor serial $WHERE --output /tmp/reproduce-ffb.md
# shellcheck disable=SC2086
"$BENCH" reproduce ffb-table4 rebias-table1 end-table1 --recipe rebias-table1:cpu-converged \
    --recipe end-table1:cpu-converged $WHERE --report-only
"$BENCH" export --experiment reproduce --tracking-uri "$TRACKING_URI" --output "$TABLE"
