"""One module per resource kind: read / create / update / delete / verify, over the real clients.

Below the kinds, what they share: the protocol (base.py), a plan's steps (steps.py), the
ownership record (record.py) and non-authoritative IAM (iam.py). A kind never imports another kind."""
