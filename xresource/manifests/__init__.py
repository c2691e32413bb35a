"""Reading manifests: files to documents (with line marks) to validated resources."""

from xresource.manifests.document import Document
from xresource.manifests.loader import LoadResult, load_manifests

__all__ = ["Document", "LoadResult", "load_manifests"]
