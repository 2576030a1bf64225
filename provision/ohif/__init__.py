"""The OHIF viewer: config emission, fetching the released viewer, serving it, and driving it in a browser."""
