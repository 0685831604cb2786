"""Import package ``tenure.conformance``, folder ``conformance/``.

Three sub-packages: :mod:`tenure.conformance.suite` (``conformance/suite/``: the
conformance suite -- candidates, history checker, properties, chaos),
:mod:`tenure.conformance.lab` (``conformance/lab/``: real store servers on this machine,
their fault controls and pytest fixtures) and :mod:`tenure.conformance.benchmarks`
(``conformance/benchmarks/``: ``tenure bench``)."""
