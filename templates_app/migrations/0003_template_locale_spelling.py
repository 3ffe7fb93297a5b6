from django.db import migrations

import templates_app.locales


def respell_locales(apps, schema_editor):
    """Store each template's locale in its canonical spelling, where no other holds it."""
    Template = apps.get_model("templates_app", "Template")
    for template in Template.objects.only("notification_type_id", "channel", "locale"):
        spelled = templates_app.locales.canonical_locale(template.locale)
        if spelled == template.locale:
            continue
        # Two spellings of one locale already exist: both are kept for staff to choose, in the
        # admin, which to delete (sending already picked either one).
        taken = Template.objects.filter(
            notification_type_id=template.notification_type_id,
            channel=template.channel,
            locale=spelled,
        ).exists()
        if not taken:
            Template.objects.filter(pk=template.pk).update(locale=spelled)


class Migration(migrations.Migration):
    dependencies = [
        ("templates_app", "0002_utm_parameters"),
    ]

    operations = [
        migrations.AlterField(
            model_name="template",
            name="locale",
            field=templates_app.locales.LocaleField(default="en", max_length=16),
        ),
        migrations.RunPython(respell_locales, migrations.RunPython.noop),
    ]
