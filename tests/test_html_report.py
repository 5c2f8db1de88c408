"""`bench leaderboard --format html`: one self-contained page, checked in a real headless Chromium."""

import json
import re
import subprocess

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from removal_bench.reporting.html import leaderboard_targets, parse_leaderboard_formats
from removal_bench.core.errors import UserError
from tests.browser import Browser, find_chromium
from tests.conftest import bench_command, quiet_env

# A label no page may execute or break on: the page must escape it in tables, JSON and tooltips.
HOSTILE = 'irene(note=</script><script>window.hacked=1</script>&"x")'
CONFIGURATIONS = {  # dataset -> (label, method, accuracy, leakage) per configuration; three seeds each
    "synthetic": [("vanilla", "vanilla", 0.86, 0.80), ("irene", "irene", 0.84, 0.62), (HOSTILE, "irene", 0.80, 0.55),
                  ("grl", "grl", 0.70, 0.75)],
    "adult": [("vanilla", "vanilla", 0.84, 0.71), ("leace", "leace", 0.83, 0.69)],
}


def fake_store(folder):
    """A real SQLite MLflow store holding bench-shaped trial runs (no training: the page is under test)."""
    uri = "sqlite:///" + str(folder / "mlflow.db")
    client = MlflowClient(uri)
    experiment = client.create_experiment("board", artifact_location=(folder / "artifacts").as_uri())
    parent = client.create_run(experiment, tags={"bench.kind": "invocation"}).info.run_id
    client.log_batch(parent, params=[Param("datasets", "adult,synthetic"), Param("seeds", "3")])
    client.set_terminated(parent)
    for dataset, rows in CONFIGURATIONS.items():
        for index, (label, method, accuracy, leakage) in enumerate(rows):
            for seed in range(3):
                tags = {
                    "bench.kind": "trial", "mlflow.parentRunId": parent, "bench.dataset": dataset, "bench.method": method,
                    "bench.label": label, "bench.config_key": f"{dataset}-{index}", "bench.config_hash": f"{dataset}-{index}-{seed}",
                    "bench.seed": str(seed), "leakage_attacker": ("gbdt", "linear", "gbdt")[seed], "bench.git_commit": "0123456789abcdef",
                }
                run = client.create_run(experiment, tags=tags).info.run_id
                jitter = 0.01 * (seed - 1)
                metrics = {"accuracy": accuracy + jitter, "leakage": leakage - jitter, "leakage_norm": 2 * (leakage - jitter) - 1,
                           "val_accuracy": accuracy, "val_leakage": leakage, "num_classes": 2, "mi_bits": 0.1, "floor_leakage": 0.55}
                client.log_batch(run, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                                 tags=[RunTag(k, v) for k, v in {}.items()])
                client.set_terminated(run)
    return uri


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("board")
    uri = fake_store(folder)
    output = folder / "leaderboard.html"
    done = subprocess.run(bench_command() + ["leaderboard", "--tracking-uri", uri, "--format", "html", "--output", str(output)],
                          cwd=folder, capture_output=True, text=True, env=quiet_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {output}" in done.stdout
    return output


def test_page_is_self_contained_and_escapes_labels(page):
    text = page.read_text()
    # Nothing fetched at view time: no external script, stylesheet, image or font.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text
    assert text.count("<script") == 2  # the data and the inline plotting code
    assert "<script>window.hacked" not in text  # the hostile label is escaped everywhere
    data = json.loads(re.search(r'<script type="application/json" id="bench-data">(.*?)</script>', text, re.S).group(1))
    assert set(data) == {"synthetic", "adult"}
    assert HOSTILE in {row["label"] for row in data["synthetic"]["configurations"]}
    assert "0123456789" in text and "board" in text  # provenance: commits and experiment


def test_leaderboard_formats_are_checked():
    assert parse_leaderboard_formats("html") == ("html",)
    assert parse_leaderboard_formats("markdown,html") == ("markdown", "html")
    with pytest.raises(UserError):
        parse_leaderboard_formats("pdf")
    with pytest.raises(UserError):
        leaderboard_targets(("markdown", "html"), "one-file.html")


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (Debian: apt-get install chromium); "
                                                     "the page's browser test needs one")
def test_page_in_headless_chromium(page):
    browser = Browser(find_chromium())
    try:
        browser.open(page.as_uri())
        state = browser.evaluate("""({
            plots: document.body.getAttribute('data-plots'),
            datasets: Array.from(document.querySelectorAll('figure.front-plot')).map(f => [
                f.getAttribute('data-dataset'), f.querySelectorAll('svg.pareto-plot').length,
                f.querySelectorAll('circle.point').length]),
            hacked: window.hacked === 1,
        })""")
        assert state["plots"] == "2" and not state["hacked"]
        assert sorted(state["datasets"]) == [["adult", 1, 2], ["synthetic", 1, 4]]  # one plot per dataset, one point per configuration

        # Hover the hostile configuration's point: the tooltip shows its configuration, seeds and attackers.
        box = browser.evaluate("""(() => {
            const point = Array.from(document.querySelectorAll('figure[data-dataset="synthetic"] circle.point'))
                .find(c => c.getAttribute('data-label').startsWith('irene(note='));
            point.scrollIntoView({block: 'center'});
            const r = point.getBoundingClientRect();
            return {x: r.left + r.width / 2, y: r.top + r.height / 2};
        })()""")
        browser.move_mouse(box["x"], box["y"])
        tooltip = browser.evaluate("({hidden: document.getElementById('tooltip').hidden, text: document.getElementById('tooltip').innerText})")
        assert not tooltip["hidden"]
        assert HOSTILE in tooltip["text"] and "3/3" in tooltip["text"] and "gbdt ×2, linear ×1" in tooltip["text"]
        assert "0.800 ± 0.006" in tooltip["text"]  # task accuracy over the three seeds

        # Clicking a legend entry hides that method's points.
        legend = browser.evaluate("""(() => {
            const entry = Array.from(document.querySelectorAll('figure[data-dataset="synthetic"] .legend span'))
                .find(s => s.textContent === 'grl');
            entry.scrollIntoView({block: 'center'});
            const r = entry.getBoundingClientRect();
            return {x: r.left + r.width / 2, y: r.top + r.height / 2};
        })()""")
        browser.click(legend["x"], legend["y"])
        hidden = browser.evaluate("""getComputedStyle(document.querySelector('figure[data-dataset="synthetic"] g[data-method="grl"]')).display""")
        assert hidden == "none"

        assert browser.problems() == []  # no console error or warning, no uncaught exception
        assert all(url.startswith(("file:", "data:", "about:")) for url in browser.requested_urls()), browser.requested_urls()
    finally:
        browser.close()
