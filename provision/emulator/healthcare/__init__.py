"""Cloud Healthcare API v1 as the emulator plays it: locations, datasets, operations, DICOM
stores with IAM, import and export through Cloud Storage, and DICOMweb (QIDO-RS, WADO-RS,
STOW-RS, delete) over a SQLite index.
"""
