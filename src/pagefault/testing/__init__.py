"""Real servers for tests and benchmarks: an HTTP origin with Range support and fault injection."""

from pagefault.testing.http_origin import FaultPlan, HTTPOrigin

__all__ = ["FaultPlan", "HTTPOrigin"]
