"""Know the node: measured limits (``pagefault doctor``), kept per boot, and which of
them bound a load (:mod:`pagefault.doctor.bottleneck`)."""

__all__: list[str] = []
