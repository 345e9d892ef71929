from rapport.profile.main import main

main()
