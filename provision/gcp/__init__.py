"""Talking to Google (or the emulator, over the same HTTP): targets, retries, operations, errors."""
