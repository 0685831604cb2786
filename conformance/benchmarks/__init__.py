"""Import package ``tenure.conformance.benchmarks``, folder ``conformance/benchmarks/``.

``tenure bench``: handover, failover, loss detection and scale, tenure against the
tools users would otherwise pick, in one run against the same store processes.

Modules: :mod:`.stats` (medians and percentiles), :mod:`.worker` (one contender as an
OS process driven over stdin, reporting JSON events with monotonic times),
:mod:`.workers` (the parent side of it), :mod:`.handover`, :mod:`.failover`,
:mod:`.detection`, :mod:`.scale`, :mod:`.storestats` (request counters read from the
store itself), :mod:`.peers` (one module per peer tool), :mod:`.runner` (what runs
against which store) and :mod:`.report` (table, ratios, JSON, plot).

Every figure is a wall-clock interval on one host's ``CLOCK_MONOTONIC`` (shared by all
processes), taken on a shared 2-core machine: quote medians and ratios, not single runs.
"""
