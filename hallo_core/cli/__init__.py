"""The command line: ``hallo`` / ``python -m hallo_core`` (entry point :func:`hallo_core.cli.main.main`)."""
