"""`dynamo-images`: the host-side CLI that builds (through Pants) and runs Dynamo images."""
