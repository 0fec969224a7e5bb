"""A Django project with the admin, using session_middleware as its session engine; its user
admin lists each user's sessions (UserSessionsAdminMixin).

`python examples/admin_screenshot.py` runs it under Django's development server and takes
docs/django-admin-sessions.png. By hand, from examples/ (REDIS_URL, SECRET_KEY and
ADMIN_PROJECT_DATABASE from the environment):

    export DJANGO_SETTINGS_MODULE=admin_project.settings
    python -m django migrate && python -m django createsuperuser
    python -m django runserver
"""
