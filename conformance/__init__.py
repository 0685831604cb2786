"""tenure.conformance: real store servers for tests (:mod:`tenure.conformance.lab`),
their pytest fixtures (:mod:`tenure.conformance.fixtures`) and the conformance suite."""
