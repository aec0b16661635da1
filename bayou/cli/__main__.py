from bayou.cli import main

main()
