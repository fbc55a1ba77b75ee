from iidfusion.cli.main import main


def test_demo_exits_zero(capsys):
    assert main(["demo"]) == 0
    assert "iidfusion" in capsys.readouterr().out
