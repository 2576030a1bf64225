"""One module per resource kind: read / create / update / delete / verify, over the real clients."""
