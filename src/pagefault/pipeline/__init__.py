"""Planner, executor and sinks: move planned byte ranges into their final tensors."""

from typing import TYPE_CHECKING

from pagefault._lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use: see pagefault._lazy
    from pagefault.pipeline.loader import LoadOptions, Target, open_stream
    from pagefault.pipeline.plan import LoadPlan, ReadTask, Segment, plan_reads
    from pagefault.pipeline.stats import LoadStats
    from pagefault.pipeline.stream import TensorStream

_EXPORTS = {
    "LoadOptions": "pagefault.pipeline.loader",
    "LoadPlan": "pagefault.pipeline.plan",
    "LoadStats": "pagefault.pipeline.stats",
    "ReadTask": "pagefault.pipeline.plan",
    "Segment": "pagefault.pipeline.plan",
    "Target": "pagefault.pipeline.loader",
    "TensorStream": "pagefault.pipeline.stream",
    "open_stream": "pagefault.pipeline.loader",
    "plan_reads": "pagefault.pipeline.plan",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

__all__ = [
    "LoadOptions",
    "LoadPlan",
    "LoadStats",
    "ReadTask",
    "Segment",
    "Target",
    "TensorStream",
    "open_stream",
    "plan_reads",
]
