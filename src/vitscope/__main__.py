from vitscope.cli import main

main()
