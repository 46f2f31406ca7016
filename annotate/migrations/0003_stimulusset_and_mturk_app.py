"""State only: ``AdversarialSet`` is now ``StimulusSet`` and MTurk's models live in the ``mturk``
app. No table changes: the set keeps its table, the MTurk tables are the ``mturk`` app's now
(its first migration takes them over), and no data moves."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0002_mturk"),
        ("robustness", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RenameModel("AdversarialSet", "StimulusSet"),
                migrations.AlterModelTable("StimulusSet", "annotate_adversarialset"),
                migrations.DeleteModel("HitAssignment"),
                migrations.DeleteModel("Hit"),
                migrations.DeleteModel("MTurkQualification"),
                migrations.DeleteModel("MTurkCall"),
            ],
            database_operations=[],
        ),
    ]
