import sys

from lfmsl.cli import main

sys.exit(main())
