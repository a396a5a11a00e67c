"""The StreamRoute operator (kopf).

Imported as ``sgw_operator``: the folder ``operator/`` is a source root, never a package, so the
standard library's ``operator`` module is never shadowed.
"""
