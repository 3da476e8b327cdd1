"""The console: one unwrapped line per log record, each line once, -q quiet, bars only when asked."""

from __future__ import annotations

import logging

import pytest

from analyzer.cli import main
from analyzer.console import LOGGERS, PROGRESS_ENV, ConsoleHandler, configure_logging, progress_bar

ADDRESS = "0x" + "ab" * 20


@pytest.fixture(autouse=True)
def console_logging():
    """Leave logging as the test found it (the CLI configures it for the whole process)."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_a_long_line_with_addresses_stays_on_one_line(capsys):
    configure_logging(0)
    line = "replay: aave-v3 " + " ".join([ADDRESS] * 6) + ": no keeper: the bonus does not pay"
    logging.getLogger("analyzer.test").info(line)
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_repeated_line_is_shown_once_and_warnings_say_so(capsys):
    configure_logging(0)
    log = logging.getLogger("analyzer.test")
    for _ in range(3):
        log.warning("scan: compound-v2 market %s left out", ADDRESS)
        log.info("replay: round 0")
    assert capsys.readouterr().err.splitlines() == [f"warning: scan: compound-v2 market {ADDRESS} left out",
                                                    "replay: round 0"]


def test_quiet_keeps_warnings_and_verbose_adds_detail(capsys):
    configure_logging(-1)
    log = logging.getLogger("analyzer.test")
    log.info("progress")
    log.warning("careful")
    assert capsys.readouterr().err.splitlines() == ["warning: careful"]
    configure_logging(1)
    log.debug("detail")
    log.debug("detail")
    assert capsys.readouterr().err.splitlines() == ["detail", "detail"]


def test_bars_are_drawn_only_when_forced_without_a_terminal(capsys, monkeypatch):
    configure_logging(0)
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    with progress_bar("replay: rounds", 3) as bar:
        bar.advance()
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(PROGRESS_ENV, "1")
    with progress_bar("replay: rounds", 3) as bar:
        bar.advance()
    assert "replay: rounds" in capsys.readouterr().err


def test_the_cli_flags_set_the_level(capsys, tmp_path):
    # a usage error after the root options: -q still prints the one error line
    assert main(["-q", "devnet", "up", "--exit", "--scenario", "morpho"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: --scenario names a shock scenario (simulate, replay); give the devnet's as "
                   "--devnet-scenario morpho"]
    assert not logging.getLogger("analyzer").isEnabledFor(logging.INFO)
