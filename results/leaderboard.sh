#!/bin/sh
# The leaderboard's sweep (issue 10): every method's strength curve on every dataset that runs on the
# 2-core development machine, then results/LEADERBOARD.md. Run from the repository root:
#
#     sh results/leaderboard.sh            # resumable: the same command skips the trials already FINISHED
#     STRENGTHS=3 SEEDS=2 DATASETS=synthetic EPOCHS=2 FASHION=0 RESULTS=/tmp/smoke \
#         TRACKING_URI=sqlite:////tmp/smoke/mlflow.db sh results/leaderboard.sh                 # smoke run
#
# Each dataset is its own `bench sweep` (all in experiment $EXPERIMENT), so an interruption costs at
# most the trials in flight, and each finished dataset already has its report in results/$EXPERIMENT/.
# Estimated wall time on 2 cores (local Ray, 2 trials at a time, 1 thread each), from per-trial times
# measured on the development machine (single thread; vanilla and 1-2 other methods per dataset):
#   per trial: synthetic 4-8 s, colored_digits 28-47 s, adult 12-13 s, compas 4-5 s, german 2.5-3 s;
#   8 strengths x 7 methods + vanilla + LEACE = 58 configurations x 5 seeds = 290 trials per dataset,
#   about 290 x 61 s = 4.9 core-hours for the five, so about 2.5-3 h of wall time;
#   Biased Fashion-MNIST (10% subsample, small_cnn, 10 epochs: about 170 s a trial), 4 strengths x
#   3 seeds = 30 configurations x 3 = 90 trials, about 4.3 core-hours, so about 2-2.5 h more.
set -eu

BENCH=${BENCH:-.venv/bin/bench}
EXPERIMENT=${EXPERIMENT:-curves}
DATA_ROOT=${DATA_ROOT:-../shared/data}
SEEDS=${SEEDS:-5}
STRENGTHS=${STRENGTHS:-8}
DATASETS=${DATASETS:-synthetic colored_digits adult compas german}
FASHION=${FASHION:-1}
EPOCHS=${EPOCHS:-}  # empty: each dataset's recipe
RESULTS=${RESULTS:-results}
TRACKING_URI=${TRACKING_URI:-sqlite:///$PWD/mlflow.db}

epochs_option() { if [ -n "$EPOCHS" ]; then echo "--epochs $EPOCHS"; fi; }

for dataset in $DATASETS; do
    # shellcheck disable=SC2046
    "$BENCH" sweep --curve --strengths "$STRENGTHS" --methods all --datasets "$dataset" --seeds "$SEEDS" \
        --data-root "$DATA_ROOT" --experiment "$EXPERIMENT" \
        --tracking-uri "$TRACKING_URI" --results-dir "$RESULTS/$EXPERIMENT" --quiet $(epochs_option)
done

if [ "$FASHION" = 1 ]; then
    # Biased Fashion-MNIST at the size that fits 2 cores: 10% of the images, the small CNN instead of the
    # reference SimpleConvNet, 10 epochs, 4 strengths and 3 seeds (the leaderboard states this).
    "$BENCH" sweep --curve --strengths 4 --methods all --datasets biased_mnist:source=fashion_mnist:subsample=0.1 \
        --seeds 3 --train encoder=small_cnn --train epochs=10 --data-root "$DATA_ROOT" --experiment "$EXPERIMENT" \
        --tracking-uri "$TRACKING_URI" --results-dir "$RESULTS/$EXPERIMENT" --quiet
fi

"$BENCH" leaderboard --experiment "$EXPERIMENT" --tracking-uri "$TRACKING_URI" --output "$RESULTS/LEADERBOARD.md" --quiet
