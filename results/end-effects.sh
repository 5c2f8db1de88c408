#!/bin/sh
# EnD's effect beside vanilla's on Biased-MNIST, per model form and training-set size (docs/METHODS.md, "EnD";
# results/end-effects/README.md holds the tables). Run from the repository root:
#
#     sh results/end-effects.sh            # resumable: each sweep skips the trials the store holds complete
#     IMPORT=1 sh results/end-effects.sh   # on another machine: first load the committed trial tables
#
# Cells: rho 0.99 and 0.997 (ReBias's counts, split=reference: train on the training images, test on all the
# test images, validation is the other half of them recoloured) x form x data x method, 3 seeds, the converged
# CPU recipe (--recipe cpu-converged: LeNet-style CNN, 12 epochs, Adam 1e-3, x0.1 after epochs 8 and 11;
# reduced against the paper's SimpleConvNet for 80 epochs):
#   form   common: the benchmark's encoder as declared (ReLU bottleneck, linear task head on z);
#          authors: EnD's model around the loss (--train bottleneck=bounded --train head=normalised: BatchNorm +
#          Tanh at the end of the bottleneck, the task head on z/||z||, as EnD's SimpleConvNet + pattern_norm);
#   data   small: subsample=0.2 (12,000 training images, 2,000 test images), where vanilla learns little shape;
#          full: all 60,000 training images;
#   method vanilla, and EnD at alpha = beta in $ALPHAS (chosen per cell on validation by the report).
# The common form on all images is results/reproduce/trials.jsonl.gz (EnD Table 1's grid, experiment
# reproduce): the report reads both experiments. Small cells first (about 3 minutes a trial on one thread), then
# the authors' form on all images (about 15).
set -eu

BENCH=${BENCH:-.venv/bin/bench}
TRACKING_URI=${TRACKING_URI:-sqlite:///$PWD/mlflow-effects.db}
DATA_ROOT=${DATA_ROOT:-../shared/data}
EXPERIMENT=${EXPERIMENT:-end-effects}
TABLE=${TABLE:-results/end-effects/trials.jsonl.gz}
ALPHAS=${ALPHAS:-1 0.1 3 0.5}  # the order they run in; the report chooses among those present
FULL_ALPHAS=${FULL_ALPHAS:-1 0.1 0.5}  # the full-data grid of EnD Table 1 (published.toml)
DATA=${DATA:-small full}
FORMS=${FORMS:-}  # empty: both forms on the small data, the authors' on all images (the common form there: reproduce)
FULL_RHOS=${FULL_RHOS:-0.99 0.997}
SEEDS=${SEEDS:-3}
IMPORT=${IMPORT:-0}

if [ "$IMPORT" = 1 ]; then
    "$BENCH" import results/reproduce/trials.jsonl.gz --experiment reproduce --tracking-uri "$TRACKING_URI"
    if [ -f "$TABLE" ]; then
        "$BENCH" import "$TABLE" --experiment "$EXPERIMENT" --tracking-uri "$TRACKING_URI"
    fi
fi

export_table() {
    mkdir -p "$(dirname "$TABLE")"
    "$BENCH" export --experiment "$EXPERIMENT" --tracking-uri "$TRACKING_URI" --output "$TABLE" --quiet
}

sweep() {  # sweep DATASETS FORM_OPTIONS BENCH_OPTIONS...
    datasets=$1; form=$2; shift 2
    # shellcheck disable=SC2086
    "$BENCH" sweep --grid --datasets "$datasets" --recipe cpu-converged $form --seeds "$SEEDS" --cpus-per-trial 1 \
        --max-concurrent "${MAX_CONCURRENT:-2}" --data-root "$DATA_ROOT" --tracking-uri "$TRACKING_URI" \
        --experiment "$EXPERIMENT" --results-dir "${TMPDIR:-/tmp}/end-effects-report" --quiet "$@"
    export_table
}

AUTHORS="--train bottleneck=bounded --train head=normalised"
form_options() { if [ "$1" = authors ]; then echo "$AUTHORS"; fi; }
for data in $DATA; do
    if [ "$data" = small ]; then
        datasets=biased_mnist:rho=0.99:split=reference:subsample=0.2,biased_mnist:rho=0.997:split=reference:subsample=0.2
        forms="common authors"; alphas=$ALPHAS
    else
        datasets=$(for rho in $FULL_RHOS; do printf 'biased_mnist:rho=%s:split=reference,' "$rho"; done)
        datasets=${datasets%,}
        forms="authors"; alphas=$FULL_ALPHAS
    fi
    forms=${FORMS:-$forms}
    # both forms' vanilla, then each alpha in both forms: an interrupted run leaves comparable cells
    for form in $forms; do
        sweep "$datasets" "$(form_options "$form")" --methods vanilla
    done
    for alpha in $alphas; do
        for form in $forms; do
            sweep "$datasets" "$(form_options "$form")" --methods end --set "end.alpha=$alpha" --set "end.beta=$alpha"
        done
    done
done
