from django.db import migrations, models

# Existing events take their type's traffic class, as accepting them now records it.
BACKFILL = """
UPDATE notifications_notification AS n SET traffic = t.traffic
FROM notifications_notificationtype AS t WHERE n.type_id = t.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="traffic",
            field=models.CharField(
                choices=[("transactional", "Transactional"), ("marketing", "Marketing")],
                default="transactional",
                editable=False,
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop, elidable=True),
        migrations.RemoveIndex(model_name="notification", name="notification_unrouted"),
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("status", "accepted")),
                fields=["traffic", "created_at"],
                name="notification_waiting",
            ),
        ),
    ]
