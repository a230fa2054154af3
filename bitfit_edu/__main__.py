import sys

from .cli import main  # reads the arguments without torch: doctor can report a missing or broken one

sys.exit(main())
