"""The security suite shares the reliability suite's fixtures (gateways, recorders, error watch)."""

from tests.reliability.conftest import error_watch, gateway_factory, process_factory, recorder_factory

__all__ = ["error_watch", "gateway_factory", "process_factory", "recorder_factory"]
