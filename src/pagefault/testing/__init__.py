"""Real servers for tests and benchmarks: an HTTP origin with Range support and fault
injection, and a server speaking the Hugging Face Hub's endpoints."""

from pagefault.testing.http_origin import FaultPlan, HTTPOrigin
from pagefault.testing.hub import HubServer

__all__ = ["FaultPlan", "HTTPOrigin", "HubServer"]
