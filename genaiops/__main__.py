from genaiops.app import main

main()
