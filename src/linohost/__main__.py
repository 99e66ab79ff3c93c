"""Entry point of `linohost` and `python -m linohost`.

Importing the CLI (click, rich, the database drivers) takes a moment: a
Ctrl-C then must end it with one line and exit code 130, not a traceback.
"""

import sys


def main():
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("linohost: interrupted\n")
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
