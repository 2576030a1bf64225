"""Cloud KMS v1: the part CMEK touches (key rings, crypto keys, their IAM policies)."""
