from rapport.ingest.main import main

main()
