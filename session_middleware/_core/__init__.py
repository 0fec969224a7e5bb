"""The decisions, with no I/O (open, commit, login, the user operations), the steps they
yield, the runners that carry the steps out, and what an epoch provider must do."""
