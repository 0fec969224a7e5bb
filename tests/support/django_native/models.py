"""A custom user model: e-mail as the user name and a UUID primary key."""

from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class Member(AbstractBaseUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)

    objects = BaseUserManager()

    USERNAME_FIELD = "email"

    class Meta:
        app_label = "django_native"
