"""Only what pyproject.toml cannot say: the product's packages are those found under src/ plus
siaga112._migrations, the repository's migrations/ folder (package-dir in pyproject.toml)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages("src"), "siaga112._migrations"])
