"""The StreamRoute model shared by the gateway and the operator.

Pure code: parsing and validating StreamRoute specs, subject templates, precedence and the
compiled routing table. It imports neither ``gateway`` nor ``sgw_operator`` and does no I/O.
"""
