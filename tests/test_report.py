"""Tables, hypervolumes, model selection and the leaderboard from a hand-made `mlflow.search_runs` frame."""

import math

import pandas as pd
import pytest

from removal_bench.reporting import cells
from removal_bench.reporting import publish
from removal_bench.reporting import summaries
from removal_bench.reporting import tables

NAN = float("nan")


def run(config, seed, status, start, accuracy=NAN, leakage_norm=NAN, val_accuracy=NAN, val_leakage=NAN,
        error=None, stopped=None, method="irene", dataset="toy", commit="abc1234def"):
    return {
        "run_id": f"{config}-{seed}-{start}",
        "status": status,
        "start_time": pd.Timestamp(1_700_000_000 + start, unit="s", tz="UTC"),
        "tags.bench.config_hash": f"{dataset}-{config}-{seed}",
        "tags.bench.config_key": f"{dataset}-{config}",
        "tags.bench.dataset": dataset,
        "tags.bench.method": method,
        "tags.bench.label": config,
        "tags.bench.seed": str(seed),
        "tags.bench.error": error,
        "tags.bench.stopped_early": stopped,
        "tags.bench.git_commit": commit,
        "tags.leakage_attacker": "linear" if status == "FINISHED" else None,
        "metrics.accuracy": accuracy,
        "metrics.leakage": 0.5 + leakage_norm / 2 if math.isfinite(leakage_norm) else NAN,
        "metrics.leakage_norm": leakage_norm,
        "metrics.val_accuracy": val_accuracy,
        "metrics.val_leakage": val_leakage,
        "metrics.num_classes": 2.0 if status == "FINISHED" else NAN,
    }


@pytest.fixture
def frame():
    rows = [
        # vanilla: three seeds, all FINISHED
        *[run("vanilla", seed, "FINISHED", 10 + seed, accuracy=acc, leakage_norm=0.6, val_accuracy=0.9, val_leakage=0.8,
              method="vanilla") for seed, acc in enumerate([0.90, 0.92, 0.94])],
        # A: seed 0 left RUNNING by a killed driver, then FINISHED by the resumed sweep;
        #    seed 1 FAILED once, then FINISHED; seed 2 never ran
        run("A", 0, "RUNNING", 1),
        run("A", 0, "FINISHED", 20, accuracy=0.85, leakage_norm=0.2, val_accuracy=0.86, val_leakage=0.6),
        run("A", 1, "FAILED", 2, error="RuntimeError: flaky"),
        run("A", 1, "FINISHED", 21, accuracy=0.85, leakage_norm=0.2, val_accuracy=0.86, val_leakage=0.6),
        # B: better validation accuracy, but one seed diverged and one was interrupted (KILLED, not by a scheduler)
        run("B", 0, "FINISHED", 22, accuracy=0.80, leakage_norm=0.1, val_accuracy=0.88, val_leakage=0.55),
        run("B", 1, "FAILED", 23, error="diverged: train_loss became nan in epoch 1"),
        run("B", 2, "KILLED", 24),
        # C: every seed stopped early by ASHA
        *[run("C", seed, "KILLED", 30 + seed, stopped="stopped by ASHA after epoch 1") for seed in range(3)],
    ]
    return pd.DataFrame(rows)


def by_label(rows):
    return {row.label: row for row in rows}


def test_each_trial_counts_once_and_missing_seeds_are_named(frame):
    rows = by_label(summaries.summarise(frame)["toy"])
    vanilla, a, b, c = rows["vanilla"], rows["A"], rows["B"], rows["C"]
    assert (vanilla.finished, vanilla.failed, vanilla.missing) == (3, 0, [])
    assert vanilla.stats["accuracy"] == pytest.approx((0.92, 0.02 / math.sqrt(3)))
    # the orphan RUNNING run and the superseded FAILED run are not counted
    assert (a.finished, a.failed, a.stopped, a.missing, a.errors) == (2, 0, 0, ["2"], [])
    assert (b.finished, b.failed, b.missing) == (1, 1, ["2"])
    assert b.errors == ["diverged: train_loss became nan in epoch 1"]
    assert (c.finished, c.stopped, c.missing) == (0, 3, [])
    text = tables.table(list(rows.values()))
    line = next(line for line in text.splitlines() if " A " in line)
    assert "2/3" in line and "missing: 2" in line
    line = next(line for line in text.splitlines() if " B " in line)
    assert "1/3" in line and "FAILED 1: diverged" in line and "missing: 2" in line
    assert "stopped early 3" in next(line for line in text.splitlines() if " C " in line)


def test_declared_seeds_show_up_as_missing_even_when_no_configuration_has_them(frame):
    rows = by_label(summaries.summarise(frame, expected_seeds={"toy": ["0", "1", "2", "3"]})["toy"])
    assert rows["vanilla"].missing == ["3"]
    assert rows["A"].missing == ["2", "3"]
    assert cells.seeds_cell(rows["vanilla"]) == "3/4"


def test_hypervolume_per_method_and_constrained_selection(frame):
    rows = summaries.summarise(frame)["toy"]
    by_method = {s.method: s for s in summaries.methods_of(rows)}
    # irene: A (0.85, 1 - 0.2) and B (0.80, 1 - 0.1) above (0.5, 0): 0.35 * 0.8 + 0.30 * 0.1 = 0.31
    assert by_method["irene"].hypervolume == pytest.approx(0.31)
    assert by_method["irene"].chance_accuracy == pytest.approx(0.5)
    assert by_method["vanilla"].hypervolume == pytest.approx((0.92 - 0.5) * 0.4)
    assert [s.method for s in summaries.methods_of(rows)] == ["irene", "vanilla"]  # ranked by hypervolume
    # B has the best validation accuracy but a FAILED seed: A is selected
    assert by_method["irene"].selected.label == "A"
    assert by_method["vanilla"].selected.label == "vanilla"
    assert by_method["irene"].trials == 2 + 2 + 3  # A's two, B's finished and failed, C's three stopped
    bounded = {s.method: s for s in summaries.methods_of(rows, max_leakage=0.7)}
    assert bounded["irene"].selected.label == "A"
    assert bounded["vanilla"].selected is None  # validation leakage 0.8 > 0.7
    assert "none qualifies" in tables.methods_table(list(bounded.values()))
    assert summaries.select(rows, max_leakage=0.5) is None


def test_hypervolume_reference_is_the_majority_class_rate_where_runs_log_it(frame):
    """A constant prediction on an imbalanced task (majority rate 0.84) at zero leakage adds no hypervolume."""
    constant = [run("erase-all", seed, "FINISHED", 40 + seed, accuracy=0.84, leakage_norm=0.0, val_accuracy=0.84,
                    val_leakage=0.5, method="inlp") for seed in range(3)]
    imbalanced = pd.concat([frame, pd.DataFrame(constant)], ignore_index=True)
    before = {s.method: s for s in summaries.methods_of(summaries.summarise(imbalanced)["toy"])}
    assert before["inlp"].chance_accuracy == pytest.approx(0.5)  # no run logs majority_accuracy: 1 / classes
    assert before["inlp"].hypervolume == pytest.approx(0.34) and before["inlp"].hypervolume > before["irene"].hypervolume
    imbalanced["metrics.majority_accuracy"] = [0.84 if status == "FINISHED" else NAN for status in imbalanced["status"]]
    after = {s.method: s for s in summaries.methods_of(summaries.summarise(imbalanced)["toy"])}
    assert after["inlp"].chance_accuracy == pytest.approx(0.84) and after["inlp"].hypervolume == 0.0
    # irene: A (0.85, 1 - 0.2) above (0.84, 0), B (0.80) below it: 0.01 * 0.8; vanilla (0.92, 0.4): 0.08 * 0.4
    assert after["irene"].hypervolume == pytest.approx(0.008)
    assert after["vanilla"].hypervolume == pytest.approx(0.032)
    assert [s.method for s in summaries.methods_of(summaries.summarise(imbalanced)["toy"])][-1] == "inlp"


@pytest.mark.parametrize("majority, flagged", [(0.5, False), (0.91, True)])
def test_a_task_barely_above_the_majority_rate_is_flagged(frame, majority, flagged):
    from removal_bench.reporting.standings import standings

    frame = frame.copy()
    frame["metrics.majority_accuracy"] = [majority if status == "FINISHED" else NAN for status in frame["status"]]
    found = standings("toy", summaries.summarise(frame)["toy"], replicates=50)
    assert any("majority class" in flag for flag in found.reliability.flags) == flagged  # vanilla: 0.92


def test_markdown_csv_latex_and_plot(frame, tmp_path):
    by_dataset = summaries.summarise(frame)
    written = publish.write_results(by_dataset, tmp_path, "exp", formats=("markdown", "csv", "latex"), max_leakage=0.7)
    assert sorted(p.name for p in written) == ["toy.csv", "toy.md", "toy.png", "toy.tex"]
    markdown = (tmp_path / "toy.md").read_text()
    assert "## Methods" in markdown and "missing: 2" in markdown and "validation leakage <= 0.7" in markdown
    csv = pd.read_csv(tmp_path / "toy.csv", dtype={"missing_seeds": str})
    a = csv[csv["label"] == "A"].iloc[0]
    assert (a["finished"], a["failed"], a["missing_seeds"], a["selected"]) == (2, 0, "2", 1)
    assert a["method_hypervolume"] == pytest.approx(0.31)
    latex = (tmp_path / "toy.tex").read_text()
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex and "0.920 $\\pm$ 0.012" in latex
    assert "±" not in latex.split("\n", 1)[1]  # only in the comment line
    assert (tmp_path / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_ranks_methods_with_trials_commit_and_date(frame):
    text = tables.leaderboard_text(summaries.summarise(frame), ["exp"], None, "2026-01-01")
    ranking = section_table(text, "### Ranking by hypervolume")
    assert [cells[1] for cells in ranking] == ["irene", "vanilla"]
    irene = ranking[0]
    # A's two seeds agree and B has one: irene's interval is a point, above vanilla's, so no tie
    assert irene[:3] == ["1", "irene", "0.3100 [0.3100, 0.3100]"] and ranking[1][0] == "2"
    assert "A" in irene and "7 (1 failed)" in irene and "abc1234def" in irene and "2023-11-14" in irene


def test_heads_that_answer_y_are_reported_where_logged(frame):
    """Per method, the configuration where its head answers y most often, in the leaderboard's section;
    nothing where no head logged the figure (s and y with different classes)."""
    assert "Heads that answer y" not in tables.leaderboard_text(summaries.summarise(frame), ["exp"], None, "2026-01-01")
    frame = frame.copy()
    finished = frame["status"] == "FINISHED"
    by_label = {"A": 0.80, "B": 0.30, "vanilla": NAN}  # vanilla has no head
    frame["metrics.head_predicts_y"] = [by_label[label] if done else NAN for label, done in zip(frame["tags.bench.label"], finished)]
    frame["metrics.head_acc"] = [0.15 if done else NAN for done in finished]
    frame["metrics.num_classes"] = [10.0 if done else NAN for done in finished]
    rows = summaries.summarise(frame)["toy"]
    note = tables.heads_reading_y(rows)
    assert "irene 0.80 at A (head acc 0.15, task acc 0.85, leak norm 0.20)" in note  # A, not B: the highest rate
    assert "vanilla" not in note and "about 0.10 for a head that ignored y" in note
    assert note in tables.leaderboard_text(summaries.summarise(frame), ["exp"], None, "2026-01-01")
    from removal_bench.reporting import html

    assert "irene 0.80 at A (head acc 0.15" in html.page(summaries.summarise(frame), ["exp"], None, "2026-01-01")


def section_table(text, heading):
    """The cells of the first Markdown table after ``heading``, header and rule left out."""
    lines = text.split(heading, 1)[1].splitlines()
    table = [line for line in lines[lines.index(next(l for l in lines if l.startswith("|"))):]]
    table = table[:next((i for i, line in enumerate(table) if not line.startswith("|")), len(table))]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table[2:]]


def test_written_results_are_readable_by_others(tmp_path):
    import os
    import stat

    from removal_bench.reporting.files import write_text

    path = tmp_path / "table.md"
    write_text(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_reduced_setting_says_so_and_a_full_one_does_not():
    """The leaderboard states a subsample or a recipe cut next to the dataset's figures (and only then)."""
    reduced = summaries.Row("biased_mnist", "vanilla", "vanilla", "k1", setting={
        "data.source": "fashion_mnist", "data.subsample": "0.1", "data.rho": "0.9", "data.split": "ours",
        "recipe.epochs": "5", "recipe.encoder": "small_cnn", "recipe.batch_size": "100"})
    text, is_reduced = summaries.dataset_setting("biased_mnist", [reduced])
    assert is_reduced and text.startswith("**Reduced**")
    for fragment in ("subsample 0.1", "epochs 5 (recipe: 100)", "encoder small_cnn (recipe: biased_mnist_cnn)", "rho=0.9"):
        assert fragment in text
    full = summaries.Row("colored_digits", "vanilla", "vanilla", "k2", setting={
        "data.rho": "0.9", "recipe.epochs": "20", "recipe.encoder": "small_cnn", "recipe.batch_size": "100"})
    text, is_reduced = summaries.dataset_setting("colored_digits", [full])
    assert not is_reduced and "Reduced" not in text and "epochs 20" in text
    shorter = summaries.Row("colored_digits", "grl", "grl", "k3", setting={**full.setting, "recipe.epochs": "2"})
    text, is_reduced = summaries.dataset_setting("colored_digits", [full, shorter])
    assert is_reduced and "epochs 2 (recipe: 20)" in text and "epochs 20/2" in text


def test_a_strength_curve_is_listed_from_weak_to_strong():
    """Rows order by hyperparameter value as a number: lambda=3.14 before lambda=10 (as text it would follow it)."""
    records = []
    for start, value in enumerate(["10", "0.01", "3.14", "100", "0.5"]):
        record = run(f"grl(lambda={value})", 0, "FINISHED", start, accuracy=0.8, leakage_norm=0.5, method="grl")
        records.append({**record, "params.hp.lambda": value})
    records.append(run("vanilla", 0, "FINISHED", 9, accuracy=0.9, leakage_norm=0.6, method="vanilla"))
    rows = summaries.summarise(pd.DataFrame(records))["toy"]
    assert [row.label for row in rows] == ["vanilla"] + [f"grl(lambda={v})" for v in ("0.01", "0.5", "3.14", "10", "100")]
