"""A minimal Django project served over ASGI with session_middleware.

Run it (with a Redis found or started for you):  python examples/run.py --app django
With your own Redis:
    REDIS_URL=redis://... uvicorn --app-dir examples django_project.asgi:application
"""
