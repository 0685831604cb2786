"""The ``tenure`` command line: one module per subcommand, each exposing ``register``.

Import package ``tenure.cli``, folder ``gateway/cli/``.
"""
