from frameq.cli import main

main()
