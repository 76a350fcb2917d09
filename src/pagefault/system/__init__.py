"""The ground floor: operating-system facts and helpers every layer may use.

``files`` (atomic writes, directory fsync, temp-file owners), ``libc`` (one handle),
``mapping`` (mmap/madvise helpers), ``pagecache`` (cachestat), ``hugetlb`` (the reserved
huge-page pool and cgroup limits), ``machine`` (CPUs, /proc/meminfo), ``processes``,
``sizes``, ``switches``. Nothing here imports any other pagefault package but ``errors``.
"""

__all__: list[str] = []  # a namespace of modules: import them by name
