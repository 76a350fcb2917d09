"""Model identity: files, tensor table with absolute byte ranges, model id."""

from pagefault.manifest.model import FileEntry, Manifest, TensorEntry, build_manifest

__all__ = ["FileEntry", "Manifest", "TensorEntry", "build_manifest"]
