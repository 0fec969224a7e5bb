"""Stand-in for the `semantic_version` package, which Flask-Login's test module imports
only to build one unused `Version(major=..., minor=..., patch=...)` at import time."""


class Version:
    def __init__(self, version_string=None, *, major=0, minor=0, patch=0, **_ignored):
        self.major, self.minor, self.patch = major, minor, patch

    def __repr__(self):
        return f"Version('{self.major}.{self.minor}.{self.patch}')"
