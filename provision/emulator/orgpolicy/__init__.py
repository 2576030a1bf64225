"""Org Policy v2: policies on organizations, folders and projects, effective policies, enforcement."""
