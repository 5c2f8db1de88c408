"""The command line: where a missing file is looked for, and `bench list`. Bad input of every command: test_bad_input.py."""

from bench.cli import main


def test_missing_data_file_names_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    assert main(["run", "--methods", "vanilla", "--datasets", "adult", "--data-root", str(tmp_path / "root")]) == 2
    assert str(tmp_path / "root" / "adult") in capsys.readouterr().err


def test_list_shows_every_method_and_dataset_with_options(capsys):
    import datasets
    import methods

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
