"""The poll the tutorial adds by hand in the shell, as data: ``migrate`` makes it."""

from django.db import migrations
from django.utils import timezone


def add_question(apps, schema_editor):
    Question = apps.get_model("polls", "Question")
    question = Question.objects.create(question_text="What's new?", pub_date=timezone.now())
    question.choice_set.create(choice_text="Not much", votes=0)
    question.choice_set.create(choice_text="The sky", votes=0)


class Migration(migrations.Migration):
    dependencies = [("polls", "0001_initial")]  # noqa: RUF012 - Django reads these
    operations = [migrations.RunPython(add_question, migrations.RunPython.noop)]  # noqa: RUF012
