"""The networks of the built-in model families (``lmbudget.families`` builds them)."""
