"""``python -m autotransfer.cli``: the console script as a module (the tcmalloc re-exec runs it)."""

from autotransfer.cli.main import main

main()
