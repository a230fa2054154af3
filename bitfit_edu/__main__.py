import sys

if sys.argv[1:2] == ["doctor"]:  # before anything imports torch, so that doctor can report a missing or broken one
    from .classroom.doctor import run

    sys.exit(run())

from .cli import main  # noqa: E402

sys.exit(main())
