"""Create or update notification types, layouts and templates from a catalog YAML file."""

from django.core.management.base import BaseCommand, CommandError

from templates_app.catalog import CatalogError, sync_file


class Command(BaseCommand):
    help = "Sync the catalog file (docs/catalog.md): new template versions only where changed."

    def add_arguments(self, parser):
        parser.add_argument("path", help="catalog YAML file")

    def handle(self, *args, path: str, **options):
        try:
            result = sync_file(path)
        except CatalogError as exc:
            raise CommandError(
                f"{path}: nothing changed, {len(exc.problems)} problem(s):\n  "
                + "\n  ".join(exc.problems)
            ) from exc
        self.stdout.write(f"Catalog {path} synced. {result.summary()}")
