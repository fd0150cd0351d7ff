from queue_service.server import main

main()
