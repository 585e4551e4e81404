"""Lets `python -m dynamo_images.cli` run the CLI."""

import sys

from dynamo_images.cli.main import main

sys.exit(main())
