"""The Django app of the Django tests (apps.py): a custom user model (models.py) and
settings safe to share between test modules (settings.py)."""
