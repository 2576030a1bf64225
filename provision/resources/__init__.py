"""One module per resource kind: read / create / update / delete / verify, over the real clients.

A kind never imports another kind. What two kinds share lives in a module below them all:

- base.py: the protocol (Live, Draft, read phases; `Key` names what one kind reads and others
  use); states.py: what the reads return (ProjectState, BucketState, DatasetState, StoreState,
  LocalFile); steps.py: a plan's steps and Options; record.py: the ownership record;
  iam.py: non-authoritative IAM (policies, grant diffs);
- healthcare_names.py: resource names and step IDs of the dataset and stores, the Healthcare
  service agent; healthcare_removals.py: what removing recorded datasets and stores means;
  store_calls.py: reading a store, patching a label, its policy, counting its studies (QIDO);
- project_reads.py: the project as read, and the label that says provision created it;
- bucket_reads.py: listing objects, Requester Pays, whether the bucket is the project's;
  bucket_access.py: whether the Healthcare service agent may read a bucket;
  import_sources.py: an import's gs:// URI and the buckets imports read;
  import_errors.py: the files an import failed on, from Cloud Logging (used by dicom-import only,
  apart so that module stays small);
  upload_files.py: the local DICOM tree to upload and the upload itself.
"""
