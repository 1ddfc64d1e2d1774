"""`tfllm.cli.main` called in process gives the caller its signal handlers back."""

import signal

from tfllm.cli import interrupts, main


def test_main_in_process_restores_the_callers_signal_handlers(tmp_path, capsys):
    """A program (or a test) that calls `main` keeps its own SIGINT / SIGTERM handling
    afterwards, and the watchdog that would end a stuck command is disarmed: a SIGINT the
    caller sends itself later must not end its process 10 s on."""
    before = {number: signal.getsignal(number) for number in interrupts.SIGNALS}
    assert main(["generate", str(tmp_path / "no-run"), "--prompt", "x"]) == 1
    assert "is not a run directory" in capsys.readouterr().err
    assert {number: signal.getsignal(number) for number in interrupts.SIGNALS} == before
    assert not interrupts._state["active"].is_set()
    previous = signal.set_wakeup_fd(-1)  # the wake-up fd is the caller's again
    signal.set_wakeup_fd(previous)
    assert previous != interrupts._state.get("wakeup")
