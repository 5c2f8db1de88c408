"""The command line: where a missing file is looked for, and `bench list`. Bad input of every command: test_bad_input.py."""

from removal_bench.commands.cli import main


def test_missing_data_file_names_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    assert main(["run", "--methods", "vanilla", "--datasets", "adult", "--data-root", str(tmp_path / "root")]) == 2
    assert str(tmp_path / "root" / "adult") in capsys.readouterr().err


def test_list_shows_every_method_and_dataset_with_options(capsys):
    from removal_bench import datasets
    from removal_bench import methods

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, cls in methods.REGISTRY.items():
        assert f"  {name} " in out
        for hp, param in cls.hparams.items():
            assert hp in out
    assert "gamma" in out and "default 0.2" in out
    for name, cls in datasets.REGISTRY.items():
        assert f"  {name} " in out
        for option in cls.options:
            assert option in out


def test_closed_stdout_ends_quietly_without_a_traceback():
    """`bench list | head -1`: the reader leaves before bench writes; bench stops with SIGPIPE's status, stderr empty."""
    import os
    import subprocess

    from tests.conftest import bench_command

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE
    try:
        done = subprocess.run(bench_command() + ["list"], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""
