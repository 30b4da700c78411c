"""``python -m medkd`` runs the CLI."""

from medkd.cli import main

main()
