from rapport.respond.main import main

main()
