"""A static page to compare aligned images: flicker, fade, checkerboard, difference, zoom and pan.

One self-contained HTML file (inline style and script, no network) over image files next to it,
opened straight from the file system. Used by the batch report's pair views and by the series
flicker page.
"""
from .page import Layer, ViewerError, render_viewer, write_pair_viewer, write_viewer

__all__ = ["Layer", "ViewerError", "render_viewer", "write_pair_viewer", "write_viewer"]
