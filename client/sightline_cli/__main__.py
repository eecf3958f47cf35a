import sys

from sightline_cli.app import main

sys.exit(main())
