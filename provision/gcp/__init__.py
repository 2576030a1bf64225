"""Talking to Google (or the emulator, over the same HTTP): targets, retries, operations, errors.

Google's libraries (google.auth, google.api_core, googleapiclient, google.cloud.*, their protobuf
types) are imported inside the functions that use them, here and in the modules that build on this
package, not at the top: importing provision's library loads no Google library until a call needs
one (each costs 0.1-0.6 s; tests/test_gcp_layer.py::test_importing_the_library_does_not_import_google_clients).
"""
