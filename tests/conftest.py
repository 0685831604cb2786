"""Shared pytest configuration: the lab fixtures (real store servers) are a plugin
of tenure.conformance so users' own test suites can load them too."""

pytest_plugins = ["tenure.conformance.lab.fixtures"]
