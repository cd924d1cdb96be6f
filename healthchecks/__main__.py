from healthchecks.cli import main

main()
