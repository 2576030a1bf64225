"""Cloud Resource Manager (v3, and the v1 project methods the OHIF viewer and older tools call)."""
