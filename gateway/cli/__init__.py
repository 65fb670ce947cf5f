"""The parallel-gateway command and its subcommands."""
