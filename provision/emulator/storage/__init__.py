"""Cloud Storage JSON API v1: buckets, bucket IAM, objects (media, multipart and resumable
uploads, list, download). `state` holds the backend (no HTTP), `handlers` the routes."""
