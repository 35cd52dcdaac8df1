#!/usr/bin/env python
"""Django's manage.py for the smoke test project (configs/django.toml)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smokesite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
