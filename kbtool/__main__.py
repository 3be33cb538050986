from kbtool.cli.app import main

main()
