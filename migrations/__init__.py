"""Alembic migrations. Shipped inside the siaga112 distribution as the package
siaga112._migrations (pyproject.toml, package-dir), so that `siaga112 migrate` finds them
without the checkout (siaga112.records.migrate.migrations_dir)."""
