"""dynamo-images: first-party code shipped in and around the Dynamo container images."""
