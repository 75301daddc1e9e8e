"""The `featurestore` command: one subcommand per SDK capability, text or `--format json`."""
