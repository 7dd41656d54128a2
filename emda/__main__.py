from emda.cli import main

main()
