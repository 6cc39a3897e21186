"""Alembic environment for Loom's own system tables.

The connection comes from `loomcrm.platform.systemdb.upgrade`, never from
an ini file: every process migrates the database it was configured with.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True, version_table="loom_alembic_version")
with context.begin_transaction():
    context.run_migrations()
