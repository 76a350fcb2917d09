"""Planner, executor and sinks: move planned byte ranges into their final tensors."""

from pagefault.pipeline.loader import LoadOptions, Target, open_stream
from pagefault.pipeline.plan import LoadPlan, ReadTask, Segment, plan_reads
from pagefault.pipeline.stats import LoadStats
from pagefault.pipeline.stream import TensorStream

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
