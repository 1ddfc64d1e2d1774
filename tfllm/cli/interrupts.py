"""SIGINT and SIGTERM end a `tfllm` command with one line and a non-zero exit code (no
TensorFlow).

`install(message)` makes both signals raise `Interrupted` in the main thread, which the
command line turns into `message(signal number)` on stderr and exit code 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM). Python runs a signal handler only
between two steps of Python code, so a main thread stuck inside TensorFlow (a collective
waiting for a lost peer) would never see it: a watchdog thread, woken by the signal
itself (`signal.set_wakeup_fd`), ends the process after `grace_seconds` with the same
line. TensorFlow's coordination service installs a SIGTERM handler of its own when a
multi-worker strategy starts; call `install` again after that. `uninstall` (the command
line calls it when a command returns) puts the previous handlers back and disarms the
watchdog, so that a program calling `tfllm.cli.main` in process keeps its own signals.
"""

import os
import signal
import sys
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state = {"message": None, "grace": 10.0, "said": threading.Event(), "watchdog": None,
          "active": threading.Event(), "previous": None}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signal_number` says which."""

    def __init__(self, signal_number):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def exit_code(signal_number):
    """The shell's convention: 128 + the signal's number."""
    return 128 + signal_number


def install(message=None, grace_seconds=10.0):
    """SIGINT and SIGTERM raise `Interrupted` from now on (main thread only).

    Args:
        message: `message(signal number)` → the one line a signal ends the program with
            (default: the one of the previous call).
        grace_seconds: how long the main thread has to end by itself after a signal
            before the watchdog prints the line and ends the process.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    _state["message"] = message or _state["message"] or (
        lambda number: f"Interrupted ({signal.Signals(number).name}).")
    _state["grace"] = grace_seconds
    if _state["previous"] is None:
        _state["previous"] = {number: signal.getsignal(number) for number in SIGNALS}
    for number in SIGNALS:
        signal.signal(number, _raise_interrupted)
    if _state["watchdog"] is None:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        _state["wakeup"] = write_end
        _state["watchdog"] = threading.Thread(target=_watch, args=(read_end,),
                                              name="tfllm-interrupts", daemon=True)
        _state["watchdog"].start()
    previous_fd = signal.set_wakeup_fd(_state["wakeup"], warn_on_full_buffer=False)
    if "previous_fd" not in _state:
        _state["previous_fd"] = previous_fd
    _state["active"].set()


def uninstall():
    """Puts back the handlers and wake-up fd that were there before `install`, and
    disarms the watchdog (it stays asleep until the next `install`)."""
    if threading.current_thread() is not threading.main_thread() or not _state["previous"]:
        return
    _state["active"].clear()
    for number, handler in _state["previous"].items():
        signal.signal(number, handler)
    signal.set_wakeup_fd(_state.pop("previous_fd", -1))
    _state["previous"] = None
    _state["said"].clear()


def say(signal_number, file=None):
    """Prints the signal's line once (whoever comes first: the main thread or the
    watchdog)."""
    if _state["said"].is_set():
        return
    _state["said"].set()
    print(_state["message"](signal_number), file=file or sys.stderr, flush=True)


def _raise_interrupted(signal_number, frame):
    raise Interrupted(signal_number)


def _watch(read_end):
    while True:
        received = os.read(read_end, 1)
        if not received:
            return
        if received[0] not in SIGNALS or not _state["active"].is_set():
            continue
        time.sleep(_state["grace"])
        if _state["active"].is_set():
            # The command did not end in time: its main thread is stuck outside Python.
            say(received[0])
            os._exit(exit_code(received[0]))
