"""What the example apps share: accounts, HTML pages and settings read from the environment."""
