from aether_cli.cli import main

main()
