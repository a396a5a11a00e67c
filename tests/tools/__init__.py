"""Tests of the simulate and tap tools."""
