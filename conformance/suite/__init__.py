"""Import package ``tenure.conformance.suite``, folder ``conformance/suite/``.

The conformance suite: candidate processes (:mod:`.candidate`, :mod:`.harness`,
:mod:`.eventstream`), the history recorder and checker (:mod:`.history`,
:mod:`.replay`), the properties and chaos runs (:mod:`.properties`, :mod:`.chaos`),
the backends under test (:mod:`.backends`), deliberately broken candidates
(:mod:`.broken`) and the unsafe ``bully://`` reference (:mod:`.bully`).

Importing this package registers ``bully://`` with :func:`tenure.adapters.register_backend`
for this process; it is never one of tenure's production schemes.
"""

from __future__ import annotations

from tenure.adapters import register_backend

REFERENCE_BACKENDS: dict[str, tuple[str, str]] = {
    # scheme: (module, class); test references only, never for real use
    "bully": ("tenure.conformance.suite.bully", "BullyStore"),
}


def register_reference_backends() -> None:
    """Lets ``tenure.connect``/``open_store`` in this process open the suite's reference
    backends (``bully://``). Idempotent; also called by each process entry point that
    may be given such a URL (:mod:`.candidate`, the benchmark worker)."""
    for scheme, (module, class_name) in REFERENCE_BACKENDS.items():
        register_backend(scheme, module, class_name)


register_reference_backends()
