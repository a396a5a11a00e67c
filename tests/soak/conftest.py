"""The soak shares the reliability suite's fixtures (gateway processes, recorders)."""

from tests.reliability.conftest import process_factory, recorder_factory

__all__ = ["process_factory", "recorder_factory"]
