from rapport.recommend.main import main

main()
