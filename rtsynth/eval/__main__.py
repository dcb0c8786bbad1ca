import sys

from .metrics import main

sys.exit(main())
