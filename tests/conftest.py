"""Shared pytest configuration: the lab fixtures (real store servers) are a plugin
of tenure.conformance so users' own test suites can load them too."""

import signal

pytest_plugins = ["tenure.conformance.lab.fixtures"]

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # A suite started in the background by a non-interactive shell (`cmd &`, nohup)
    # inherits SIGINT ignored, and so would every command it starts: the ctrl-c tests
    # would then test the shell, not tenure. A handler is not inherited across exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
