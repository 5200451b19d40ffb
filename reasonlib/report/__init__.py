"""Reporting: findings as data, the cross-seed summary, figures, tables, the static site,
the failure explorer and the results blocks of the docs. The top layer; docs/layout.md."""
