from iidfusion.cli.main import main


def test_lists_bundled(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "handwritten: UCI Multiple Features" in out and "synthetic:" in out


def test_describes_a_name_and_a_file(capsys, tiny_npz):
    assert main(["datasets", "handwritten"]) == 0
    out = capsys.readouterr().out
    assert "views: 6" in out and "samples: 2000" in out and "classes: 10" in out
    assert main(["datasets", str(tiny_npz)]) == 0
    out = capsys.readouterr().out
    assert "views: 3" in out and "samples: 120" in out


def test_missing_file(capsys, tmp_path):
    assert main(["datasets", str(tmp_path / "nope.mat")]) == 2
    assert "no such file" in capsys.readouterr().err
