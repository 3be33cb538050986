from kbtool.cli.main import main

main()
