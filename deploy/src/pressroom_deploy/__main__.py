from pressroom_deploy.cli import main

main()
