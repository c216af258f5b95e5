from dataselect.cli.main import main

main()
