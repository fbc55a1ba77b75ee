from iidfusion.core.progress import progress_bar, write_line


def test_a_disabled_bar_draws_nothing_and_lines_go_to_stderr(capsys):
    bar = progress_bar(3, "runs", enabled=False)
    bar.update(1)
    bar.set_postfix_str("running x")
    bar.close()
    write_line("[1/3] x seed 0: val 90.00")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "[1/3] x seed 0: val 90.00\n"


def test_an_enabled_bar_draws_on_stderr_only(capsys):
    bar = progress_bar(2, "suite", initial=1)
    bar.update(1)
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == "" and "suite" in captured.err
