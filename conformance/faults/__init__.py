"""Faults as Jepsen injects them, for the conformance suite (``tenure.conformance.faults``).

* :mod:`.netns` -- network namespaces on a bridge made by the run itself, recorded in a
  state file so a killed run's leftovers are swept;
* :mod:`.rules` -- nftables/netem rules among them: isolation, majority/minority
  splits, a bridge node, one-way and random loss, link latency;
* :mod:`.lab` -- lab clusters with one namespace per store node, and what each store
  says about its leader and peers (evidence that a fault happened);
* :mod:`.classes` -- the fault classes the chaos schedule and the soak draw from.

See docs/faults.md for what is injected, how, and what falls back to the TCP proxy.
"""
