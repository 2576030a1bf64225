"""Checks that read and judge, never change: the permissions preflight (preflight.py), the DICOMweb
smoke (dicomweb.py), and what an answer means (answers.py, shared with the browser smoke)."""
