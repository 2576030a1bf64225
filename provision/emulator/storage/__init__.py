"""Cloud Storage JSON API v1: buckets, bucket IAM, objects (media, multipart and resumable
uploads, list, download). `state.Backend` is the backend facade (no HTTP) over `buckets`,
`access`, `objects`, `globs`, `uploads`, `names` and `common`; `handlers` holds the routes."""
