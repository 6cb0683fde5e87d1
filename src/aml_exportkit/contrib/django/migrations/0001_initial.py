"""The export page's model: no table (``managed = False``), only its ``run_export``
permission, which ``migrate`` creates."""

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="ExportPage",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "export page",
                "verbose_name_plural": "export page",
                "permissions": [("run_export", "Can run exportkit exports")],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
