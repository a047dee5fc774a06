from lmbudget.cli import main

main()
