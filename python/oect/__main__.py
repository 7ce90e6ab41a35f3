"""``python -m oect ARGS`` is ``oect ARGS``: the bundled executable, run in place of
this interpreter."""

import os
import sys

from ._process import child_env, executable


def main() -> None:
    exe = executable()
    os.execve(exe, [exe, *sys.argv[1:]], child_env())


if __name__ == "__main__":
    main()
