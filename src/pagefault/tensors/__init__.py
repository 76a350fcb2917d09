"""Tensor memory, below the loader and the checkpointer alike: the huge-page arena that
tensors view, byte views of tensors, and the safetensors <-> torch dtype mapping."""

__all__: list[str] = []  # a namespace of modules: import them by name
