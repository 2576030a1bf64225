"""Service Usage v1 (and v1beta1 generateServiceIdentity): which APIs a project may call."""
