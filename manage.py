#!/usr/bin/env python
"""Django's command-line utility for Blindspot."""

import os
import re
import sys

# A missing table (SQLite's and PostgreSQL's wording): the database was never migrated.
MISSING_TABLE = re.compile(r"no such table|relation \S+ does not exist")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    try:
        execute_from_command_line(sys.argv)
    except DatabaseError as exc:
        if not MISSING_TABLE.search(str(exc)):
            raise
        sys.stderr.write(
            f"The database is not set up ({str(exc).splitlines()[0]}): "
            "run `python manage.py migrate` first.\n"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
