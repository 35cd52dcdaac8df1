"""A small Django project (``python manage.py runserver --noreload``) that records each start."""

import json
import os
import sys

BEFORE = {"django": "django" in sys.modules, "zsite": "zsite" in sys.modules}

if __name__ == "__main__":
    with open("starts.jsonl", "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "before": BEFORE}) + "\n")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
